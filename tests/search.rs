//! Searching records, held credentials, templates and tokens on real daemons: filter trees,
//! sort, pages with totals over gRPC and the CLI, and what bad queries get.

mod common;

use std::collections::HashSet;

use agentd::harness::ProcessAgent;
use agentd::rpc::proto::{
    self, Condition, CreateOfferRequest, CreateOffersRequest, Filter, Filters,
    ListCredentialsRequest, ListRecordsRequest, Operator, PageRequest, Query, QueryValue, SortKey,
    filter::Node, query_value::Kind as V,
};
use common::{accept_until_held, connect, start};
use serde_json::{Value, json};
use tonic::Code;

fn cond(field: &str, op: Operator, v: V) -> Filter {
    Filter {
        node: Some(Node::Condition(Condition {
            field: field.into(),
            op: op as i32,
            value: Some(QueryValue { kind: Some(v) }),
        })),
    }
}

fn text(s: &str) -> V {
    V::Text(s.into())
}

fn and(fs: Vec<Filter>) -> Filter {
    Filter {
        node: Some(Node::And(Filters { filters: fs })),
    }
}

fn or(fs: Vec<Filter>) -> Filter {
    Filter {
        node: Some(Node::Or(Filters { filters: fs })),
    }
}

fn not(f: Filter) -> Filter {
    Filter {
        node: Some(Node::Not(Box::new(f))),
    }
}

fn query(filter: Filter, sort: &[(&str, bool)]) -> Option<Query> {
    Some(Query {
        filter: Some(filter),
        sort: sort
            .iter()
            .map(|(f, d)| SortKey {
                field: f.to_string(),
                descending: *d,
            })
            .collect(),
    })
}

/// Every page of a ListRecords call, `size` at a time: (records, total of
/// the first page).
async fn all_records(
    api: &mut proto::issuance_service_client::IssuanceServiceClient<tonic::transport::Channel>,
    q: Option<Query>,
    size: u32,
) -> (Vec<proto::CredentialRecord>, proto::Total) {
    let mut out = Vec::new();
    let mut token = String::new();
    let mut total = None;
    loop {
        let page = api
            .list_records(ListRecordsRequest {
                query: q.clone(),
                page: Some(PageRequest {
                    page_size: size,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.records.len() <= size as usize);
        total = total.or(page.total);
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return (out, total.expect("a total"));
        }
        token = page.next_page_token;
    }
}

/// Creates `n` offers made by `offer(i)` in one CreateOffers call; all must
/// be created.
async fn offers(
    c: &agentd::harness::Clients,
    n: usize,
    offer: impl Fn(usize) -> CreateOfferRequest,
) -> Vec<proto::OfferOutcome> {
    let made = c
        .issuance
        .clone()
        .create_offers(CreateOffersRequest {
            offers: (0..n).map(offer).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.created.len(), n, "{:?}", made.failed.first());
    made.created
}

/// The CLI run against `agent` with `args`, with no key or wallet from
/// the environment.
async fn cli(agent: &ProcessAgent, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .args(args)
        .args(["--grpc", &agent.grpc.to_string()])
        .env_remove("AGENTD_API_KEY")
        .env_remove("AGENTD_WALLET")
        .output()
        .await
        .unwrap()
}

/// The CLI's `--json` output of `args`, which must succeed.
async fn cli_json(agent: &ProcessAgent, args: &[&str]) -> Value {
    let out = cli(agent, &[args, &["--json"]].concat()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn level(r: &proto::CredentialRecord) -> i64 {
    let claims: Value = serde_json::from_str(&r.claims_json).unwrap();
    claims["level"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_credentials_are_found_by_filter_trees_sorted_and_paged() {
    let issuer = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (ic, hc, ci) = connect(&issuer, &holder).await;
    let mut api = ic.issuance.clone();
    let names = ["Alice Smith", "Bob Jones", "Carol Smith", "Dan Brown"];
    let created = offers(&ic, 40, |i| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: json!({"name": names[i % 4], "level": i % 5}).to_string(),
        types: vec![if i % 2 == 0 { "Membership" } else { "Badge" }.into()],
        correlation_id: format!("corr-{i}"),
        collection_id: format!("batch-{}", i / 20),
        automatic_issuance: true,
        ..Default::default()
    })
    .await;
    // The holder takes the first three offers of batch-0 that are Badges.
    let mut held = Vec::new();
    for o in created.iter().filter(|o| o.index % 2 == 1).take(3) {
        held.push(accept_until_held(&hc, &o.record.as_ref().unwrap().thid).await);
    }

    // Badges of batch-0 at level 2 or more, or anyone named Smith, but not
    // corr-4: a tree of and/or/not, sorted by level then newest first.
    let f = and(vec![
        or(vec![
            and(vec![
                cond("types", Operator::Contains, text("Badge")),
                cond("collection_id", Operator::Eq, text("batch-0")),
                cond("claims.level", Operator::Gte, V::Number(2.0)),
            ]),
            cond("claims.name", Operator::Like, text("% Smith")),
        ]),
        not(cond("correlation_id", Operator::Eq, text("corr-4"))),
        cond("role", Operator::Eq, text("issuer")),
    ]);
    let want: Vec<usize> = (0..40)
        .filter(|i| {
            ((i % 2 == 1 && i / 20 == 0 && i % 5 >= 2) || names[i % 4].ends_with(" Smith"))
                && *i != 4
        })
        .collect();
    let (got, total) = all_records(
        &mut api,
        query(f.clone(), &[("claims.level", false), ("created_at", true)]),
        7,
    )
    .await;
    assert_eq!(total.size as usize, want.len());
    assert!(total.exact);
    let ids: HashSet<&str> = got.iter().map(|r| r.correlation_id.as_str()).collect();
    let want_ids: HashSet<String> = want.iter().map(|i| format!("corr-{i}")).collect();
    assert_eq!(ids, want_ids.iter().map(String::as_str).collect());
    assert_eq!(got.len(), want.len(), "no record twice");
    assert!(
        got.windows(2).all(|w| level(&w[0]) < level(&w[1])
            || (level(&w[0]) == level(&w[1]) && w[0].created_at_ms >= w[1].created_at_ms)),
        "sorted by level, then newest first"
    );

    // States: the three accepted are CredentialSent (or about to be); the
    // rest are offers. By creation, the default order, in pages of 9.
    let sent = and(vec![
        cond(
            "state",
            Operator::In,
            V::List(proto::StringList {
                values: vec!["CredentialSent".into(), "credential-generated".into()],
            }),
        ),
        cond("issued_at", Operator::Gte, V::TimeMs(0)),
    ]);
    let (got, total) = all_records(&mut api, query(sent, &[]), 9).await;
    assert_eq!((got.len(), total.size), (3, 3), "{got:?}");
    let (all, total) = all_records(&mut api, None, 9).await;
    assert_eq!((all.len(), total.size), (40, 40));
    assert!(
        all.windows(2)
            .all(|w| w[0].created_at_ms <= w[1].created_at_ms)
    );

    // The holder: its credentials by type and claim, with status.
    let mut holder_api = hc.holder.clone();
    let found = holder_api
        .list_credentials(ListCredentialsRequest {
            query: query(
                and(vec![
                    cond("types", Operator::Eq, text("Badge")),
                    cond("status", Operator::Eq, text("active")),
                    cond("claims", Operator::Fulltext, text("jones")),
                ]),
                &[("claims.level", true)],
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<&proto::Credential> = held
        .iter()
        .filter(|c| c.claims_json.contains("Jones"))
        .collect();
    assert_eq!(found.credentials.len(), want.len());
    assert_eq!(found.total.unwrap().size as usize, want.len());
    assert!(!want.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_invalid_arguments_naming_the_field() {
    let agent = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (c, _, ci) = connect(&agent, &holder).await;
    let mut api = c.issuance.clone();
    let list = |q: Option<Query>, page: Option<PageRequest>| ListRecordsRequest {
        query: q,
        page,
        ..Default::default()
    };
    let refused = async |api: &mut proto::issuance_service_client::IssuanceServiceClient<_>,
                         q: Option<Query>| {
        let e = api.list_records(list(q, None)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        e.message().to_string()
    };
    let m = refused(
        &mut api,
        query(cond("colour", Operator::Eq, text("red")), &[]),
    )
    .await;
    assert!(m.contains("`colour`"), "{m}");
    let m = refused(
        &mut api,
        query(cond("created_at", Operator::Gt, text("yesterday")), &[]),
    )
    .await;
    assert!(m.contains("`created_at`"), "{m}");
    let m = refused(
        &mut api,
        query(
            and(vec![cond("claims.level", Operator::Like, V::Number(3.0))]),
            &[],
        ),
    )
    .await;
    assert!(m.contains("`claims.level`") && m.contains("and[0]"), "{m}");
    let m = refused(
        &mut api,
        query(cond("state", Operator::Eq, text("Pondering")), &[]),
    )
    .await;
    assert!(m.contains("`state`"), "{m}");
    let mut deep = cond("role", Operator::Eq, text("issuer"));
    for _ in 0..8 {
        deep = not(deep);
    }
    let m = refused(&mut api, query(deep, &[])).await;
    assert!(m.contains("nest"), "{m}");
    let m = refused(
        &mut api,
        query(
            cond("role", Operator::Eq, text("issuer")),
            &[("types", false)],
        ),
    )
    .await;
    assert!(m.contains("`types`"), "{m}");

    // A page size over 100 is brought down to 100, not refused.
    offers(&c, 105, |i| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: json!({"n": i}).to_string(),
        draft: true,
        ..Default::default()
    })
    .await;
    let page = api
        .list_records(list(
            None,
            Some(PageRequest {
                page_size: 1000,
                page_token: String::new(),
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 100);
    assert_eq!(page.total.unwrap().size, 105);
    // A token is good only with the query that gave it.
    let other = query(cond("state", Operator::Eq, text("Draft")), &[]);
    let e = api
        .list_records(list(
            other,
            Some(PageRequest {
                page_size: 0,
                page_token: page.next_page_token,
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("page_token"), "{e:?}");
}

/// The CLI's text form reaches the daemon as the same query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_searches_with_where_and_sort() {
    let agent = start("issuer", &[]).await;
    let holder = start("holder", &[]).await;
    let (c, _, ci) = connect(&agent, &holder).await;
    offers(&c, 12, |i| CreateOfferRequest {
        connection_id: ci.clone(),
        claims_json: json!({"name": format!("n{i}"), "level": i}).to_string(),
        draft: true,
        correlation_id: format!("c{}", i % 3),
        ..Default::default()
    })
    .await;
    let v = cli_json(
        &agent,
        &[
            "record",
            "list",
            "--where",
            "state=Draft and claims.level>=4 and not (correlation_id=c0 or correlation_id=c2)",
            "--sort",
            "-claims.level",
        ],
    )
    .await;
    let levels: Vec<i64> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let claims: Value = serde_json::from_str(r["claims_json"].as_str().unwrap()).unwrap();
            claims["level"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(levels, [10, 7, 4]);
    assert_eq!(v["total_size"], 3);

    let bad = cli(&agent, &["record", "list", "--where", "created_at > soon"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("created_at"));
}

/// Templates and tokens take the same queries: filter, sort, pages with a
/// total, and the same errors naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_tokens_are_searched_alike() {
    let agent = start("issuer", &[]).await;
    let c = agent.clients().await.unwrap();
    let mut templates = c.templates.clone();
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let mut made = Vec::new();
    for (name, ty) in [
        ("Degree", "UniversityDegree"),
        ("Badge", "Badge"),
        ("Degree with honours", "UniversityDegree"),
    ] {
        let t = templates
            .create_template(proto::CreateTemplateRequest {
                name: name.into(),
                types: vec![ty.into()],
                schema_json: schema.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        made.push(t);
    }
    templates
        .archive_template(proto::GetTemplateRequest {
            template_id: made[1].id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let list = |q: Option<Query>, include_archived| proto::ListTemplatesRequest {
        query: q,
        include_archived,
        ..Default::default()
    };
    let names = |r: proto::ListTemplatesResponse| {
        let total = r.total.expect("a total");
        assert!(total.exact);
        assert_eq!(total.size as usize, r.templates.len());
        r.templates.into_iter().map(|t| t.name).collect::<Vec<_>>()
    };
    let degrees = query(
        cond("name", Operator::Like, text("Degree%")),
        &[("created_at", true)],
    );
    let found = templates.list_templates(list(degrees, false)).await;
    assert_eq!(
        names(found.unwrap().into_inner()),
        ["Degree with honours", "Degree"]
    );
    let by_type = query(cond("types", Operator::Contains, text("Badge")), &[]);
    let found = templates.list_templates(list(by_type.clone(), false)).await;
    assert!(names(found.unwrap().into_inner()).is_empty());
    let found = templates.list_templates(list(by_type, true)).await;
    assert_eq!(names(found.unwrap().into_inner()), ["Badge"]);
    let archived = query(cond("status", Operator::Eq, text("archived")), &[]);
    let found = templates.list_templates(list(archived.clone(), true)).await;
    assert_eq!(names(found.unwrap().into_inner()), ["Badge"]);
    // Asking for archived ones is enough, without include_archived.
    let found = templates.list_templates(list(archived, false)).await;
    assert_eq!(names(found.unwrap().into_inner()), ["Badge"]);
    let e = templates
        .list_templates(list(
            query(cond("claims.name", Operator::Eq, text("x")), &[]),
            true,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("`claims.name`"), "{e:?}");

    // Tokens: across wallets unless one is named; role and status are enums.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", agent.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tokens = proto::token_service_client::TokenServiceClient::new(channel);
    let mut ids = Vec::new();
    for (role, label) in [
        (proto::TokenRole::Issuer, "ci"),
        (proto::TokenRole::Holder, "phone"),
        (proto::TokenRole::Auditor, "audit desk"),
        (proto::TokenRole::Issuer, "old ci"),
    ] {
        let t = tokens
            .create_token(proto::CreateTokenRequest {
                wallet_id: "default".into(),
                role: role as i32,
                label: label.into(),
                rate_per_sec: 0,
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(t.token.unwrap().id);
    }
    tokens
        .revoke_token(proto::RevokeTokenRequest { id: ids[3].clone() })
        .await
        .unwrap();
    let list = |wallet: &str, q: Option<Query>| proto::ListTokensRequest {
        wallet_id: wallet.into(),
        query: q,
        ..Default::default()
    };
    let labels = |r: proto::ListTokensResponse| {
        assert_eq!(r.total.expect("a total").size as usize, r.tokens.len());
        r.tokens.into_iter().map(|t| t.label).collect::<Vec<_>>()
    };
    let live_staff = query(
        and(vec![
            cond(
                "role",
                Operator::In,
                V::List(proto::StringList {
                    values: vec!["TOKEN_ROLE_ISSUER".into(), "auditor".into()],
                }),
            ),
            cond("status", Operator::Eq, text("active")),
        ]),
        &[("label", false)],
    );
    let found = tokens.list_tokens(list("", live_staff.clone())).await;
    assert_eq!(labels(found.unwrap().into_inner()), ["audit desk", "ci"]);
    // The same from the CLI's text form.
    let v = cli_json(
        &agent,
        &[
            "token",
            "list",
            "--where",
            "role in (TOKEN_ROLE_ISSUER, auditor) and status=active",
            "--sort",
            "label",
        ],
    )
    .await;
    let cli_labels: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(cli_labels, ["audit desk", "ci"]);
    assert_eq!(v["total_size"], 2);
    let found = tokens.list_tokens(list("nobody", live_staff)).await;
    assert!(labels(found.unwrap().into_inner()).is_empty());
    let revoked = query(cond("revoked_at", Operator::Gte, V::TimeMs(0)), &[]);
    let found = tokens.list_tokens(list("default", revoked)).await;
    assert_eq!(labels(found.unwrap().into_inner()), ["old ci"]);
    let e = tokens
        .list_tokens(list(
            "",
            query(cond("role", Operator::Eq, text("superuser")), &[]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("`role`"), "{e:?}");
}
