//! What a query may read, and totals past what counting reads: the bounds
//! that keep a page's cost the same at any size of wallet.

use super::*;

/// A query that would read more than its budget stops with
/// RESOURCE_EXHAUSTED naming the limit; an indexed one within it answers.
#[test]
fn a_query_past_its_budget_is_resource_exhausted() {
    const BUDGET: super::plan::Budget = super::plan::Budget {
        keys: 2_000,
        docs: 100,
    };
    let docs: Vec<CredentialRecord> = (0..300)
        .map(|i| record(i, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    let claim = Query {
        filter: Some(on("claims.name", Op::Eq, text("nobody"))),
        sort: vec![],
    };
    let e = page::run_within::<CredentialRecord>(&store, WALLET, &claim, 20, "", NOW, BUDGET)
        .unwrap_err();
    assert!(
        matches!(&e, crate::error::Error::ResourceExhausted(m) if m.contains("2000 index keys or 100 records")),
        "{e:?}"
    );
    let indexed = Query {
        filter: Some(on("thid", Op::Eq, text("thread-3"))),
        sort: vec![],
    };
    let found: Found<CredentialRecord> =
        page::run_within(&store, WALLET, &indexed, 20, "", NOW, BUDGET).unwrap();
    assert_eq!(found.total_size as usize, expected(&docs, &indexed).len());
}

/// A record condition, known to be valid.
fn on(field: &str, op: Op, value: Value) -> Filter {
    Filter::Cond(Cond::new(Kind::Records, field, op, value).unwrap())
}

/// `n` records of one wallet, created a millisecond apart, each then
/// changed by `each`.
fn in_order(n: usize, each: impl Fn(usize, &mut CredentialRecord)) -> Vec<CredentialRecord> {
    (0..n)
        .map(|i| {
            let mut r = record(i, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            r.wallet_id = WALLET.into();
            r.created_at_ms = 1_000_000 + i as i64;
            each(i, &mut r);
            r
        })
        .collect()
}

/// Past the exact bound a total is estimated, marked so, and near the
/// truth for matches spread evenly over time.
#[test]
fn totals_past_the_bound_are_estimates() {
    let docs = in_order(3_000, |_, _| {});
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    for descending in [false, true] {
        let q = Query {
            filter: None,
            sort: vec![SortKey::new(Kind::Records, "created_at", descending).unwrap()],
        };
        let found: Found<CredentialRecord> = run(&store, WALLET, &q, 10, "", NOW).unwrap();
        assert!(!found.total_exact);
        assert!(
            (2_900..=3_100).contains(&found.total_size),
            "{}",
            found.total_size
        );
    }
    let few = Query {
        filter: Some(on("thid", Op::Eq, text("thread-3"))),
        sort: vec![],
    };
    let found: Found<CredentialRecord> = run(&store, WALLET, &few, 10, "", NOW).unwrap();
    assert!(found.total_exact);
    assert_eq!(found.total_size as usize, expected(&docs, &few).len());
}

/// A first page and its count read within one bound: a cheap page leaves
/// counting most of it (totals of a few hundred stay exact), an expensive
/// one (a sparse `and` over a long span) leaves it only the floor, and
/// matches that stop soon after the page are counted exactly either way.
#[test]
fn a_first_page_and_its_count_read_within_one_bound() {
    let docs = in_order(3_000, |i, r| {
        // A connection busy only at first: 30 records among the first 40.
        r.connection_id = if i < 40 && i % 4 != 3 { "early" } else { "c0" }.into();
    });
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    let every = Query {
        filter: None,
        sort: vec![],
    };
    let first: Found<CredentialRecord> = run(&store, WALLET, &every, 20, "", NOW).unwrap();
    assert!(!first.total_exact);
    assert!((2_900..=3_100).contains(&first.total_size));
    assert!(first.keys_read <= 610, "{} keys read", first.keys_read);
    // An estimate is scaled to the part of the span the filter's own
    // creation-time bounds allow: the newest third, not the whole wallet.
    for descending in [false, true] {
        let newest = Query {
            filter: Some(on("created_at", Op::Gte, Value::Time(1_002_000))),
            sort: vec![SortKey::new(Kind::Records, "created_at", descending).unwrap()],
        };
        let found: Found<CredentialRecord> = run(&store, WALLET, &newest, 20, "", NOW).unwrap();
        assert!(!found.total_exact);
        assert!(
            (950..=1_050).contains(&found.total_size),
            "{}",
            found.total_size
        );
    }
    let early = Query {
        filter: Some(on("connection_id", Op::Eq, text("early"))),
        sort: vec![],
    };
    let found: Found<CredentialRecord> = run(&store, WALLET, &early, 20, "", NOW).unwrap();
    assert!(found.total_exact);
    assert_eq!(found.total_size, 30);
    // One in eight, a page of 100: the page reads some 1,400 keys. On a
    // store that ends at its 101st match the count finds nothing more; on
    // the whole store it reads no more than the floor before estimating.
    let sparse = Query {
        filter: Some(Filter::And(
            [
                ("state", "Abandoned"),
                ("role", "Holder"),
                ("connection_id", "c0"),
            ]
            .into_iter()
            .map(|(f, v)| on(f, Op::Eq, text(v)))
            .collect(),
        )),
        sort: vec![],
    };
    let matching: Vec<usize> = (0..docs.len())
        .filter(|&i| expected(&docs[i..=i], &sparse).len() == 1)
        .collect();
    let (_dir, upto) = store_with(&docs[..=matching[100]], |tx, r| tx.put_record(None, r));
    let ends: Found<CredentialRecord> = run(&upto, WALLET, &sparse, 100, "", NOW).unwrap();
    let goes_on: Found<CredentialRecord> = run(&store, WALLET, &sparse, 100, "", NOW).unwrap();
    assert!(ends.total_exact);
    assert_eq!(ends.total_size, 101);
    assert!(ends.keys_read > 600, "{} keys read", ends.keys_read);
    assert!(!goes_on.total_exact);
    let truth = matching.len() as f64;
    assert!((goes_on.total_size as f64 - truth).abs() < truth * 0.2);
    assert!(
        goes_on.keys_read <= ends.keys_read + 60,
        "{} keys read, {} for the page alone",
        goes_on.keys_read,
        ends.keys_read
    );
    // A condition no index answers, in a wallet of 300: the page loads
    // about 80 records to find its 21 matches, and counting what is left
    // of the bound, not 100 more.
    let (_dir, mid) = store_with(&docs[..300], |tx, r| tx.put_record(None, r));
    let claim = Query {
        filter: Some(on("claims.name", Op::Eq, text("Alice"))),
        sort: vec![],
    };
    let found: Found<CredentialRecord> = run(&mid, WALLET, &claim, 20, "", NOW).unwrap();
    let truth = expected(&docs[..300], &claim).len() as f64;
    assert!(!found.total_exact);
    assert!(
        (found.total_size as f64 - truth).abs() < truth * 0.35,
        "{} for {truth}",
        found.total_size
    );
    assert!(found.docs_read <= 130, "{} records read", found.docs_read);
    let (_dir, small) = store_with(&docs[..400], |tx, r| tx.put_record(None, r));
    let found: Found<CredentialRecord> = run(&small, WALLET, &every, 20, "", NOW).unwrap();
    assert!(found.total_exact);
    assert_eq!(found.total_size, 400);
}

/// A wide time range streams; its total is never below what the page
/// found, even when counting stops early.
#[test]
fn a_wide_time_range_streams_and_counts_at_least_its_page() {
    let docs = in_order(1_500, |i, r| r.updated_at_ms = 2_000_000 + i as i64 * 1_000);
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    let q = Query {
        filter: Some(on("updated_at", Op::Gte, Value::Time(2_000_000))),
        sort: vec![SortKey::new(Kind::Records, "created_at", true).unwrap()],
    };
    let found: Found<CredentialRecord> = run(&store, WALLET, &q, 20, "", NOW).unwrap();
    assert_eq!(found.items.len(), 20);
    assert_eq!(found.items[0].id, "rec-1499");
    assert!(!found.total_exact);
    assert!(found.total_size >= 21, "{}", found.total_size);
}

/// A later page plans its count again: reading a time range's 700 keys
/// for that is more than counting's own 600, and must not fail the page.
#[test]
fn a_later_page_of_a_long_time_list_is_counted() {
    let docs = in_order(700, |i, r| r.updated_at_ms = 2_000_000 + i as i64 * 1_000);
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    let q = Query {
        filter: Some(on("updated_at", Op::Gte, Value::Time(2_000_000))),
        sort: vec![],
    };
    let (got, total, _) = all_pages::<CredentialRecord>(&store, &q, 100, || {});
    assert_eq!(got, expected(&docs, &q));
    assert!(total >= 100, "{total}");
}

/// A time range wider than the list is merged from the runs of its
/// minutes, so a page loads only matching records; one spread over more
/// minutes than are merged is checked on the records. Every page comes in
/// order either way, both directions.
#[test]
fn a_wide_time_range_merges_its_minutes() {
    const FEW_DOCS: super::plan::Budget = super::plan::Budget {
        keys: 10_000,
        docs: 30,
    };
    // Every fourth record was updated in the range: 1,100 of them, `apart`
    // ms from each other; the others long before.
    let spread = |apart: i64| {
        in_order(4_400, |i, r| {
            r.updated_at_ms = match i % 4 {
                0 => 2_000_000 + (i / 4) as i64 * apart,
                _ => 500_000,
            }
        })
    };
    for (apart, merged) in [(1_000, true), (61_000, false)] {
        let docs = spread(apart);
        let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
        for descending in [false, true] {
            let q = Query {
                filter: Some(on("updated_at", Op::Gte, Value::Time(2_000_000))),
                sort: vec![SortKey::new(Kind::Records, "created_at", descending).unwrap()],
            };
            let (got, _, _) = all_pages::<CredentialRecord>(&store, &q, 100, || {});
            assert_eq!(got, expected(&docs, &q), "{apart} ms apart");
            let first =
                page::run_within::<CredentialRecord>(&store, WALLET, &q, 20, "", NOW, FEW_DOCS);
            match first {
                Ok(found) => assert!(merged && found.items.len() == 20, "{apart} ms apart"),
                Err(e) => assert!(
                    !merged && matches!(e, crate::error::Error::ResourceExhausted(_)),
                    "{apart} ms apart: {e:?}"
                ),
            }
        }
    }
}

/// The live admin the bootstrap looks for at start is found through the
/// role index, however many other tokens came before it: with a budget of
/// ten records, a hundred holder tokens first are not read.
#[test]
fn a_live_admin_is_found_without_reading_other_tokens() {
    const BUDGET: super::plan::Budget = super::plan::Budget {
        keys: 1_000,
        docs: 10,
    };
    let mut docs: Vec<Token> = (0..100)
        .map(|i| {
            let mut t = token(i, i as u64);
            t.role = crate::store::TokenRole::Holder;
            t
        })
        .collect();
    let mut admin = token(100, 0);
    admin.role = crate::store::TokenRole::Admin;
    admin.revoked_at_ms = None;
    docs.push(admin.clone());
    let (_dir, store) = store_with(&docs, |tx, t| tx.put_token(t));
    let q = Query::default()
        .and(Filter::eq(Kind::Tokens, "role", "admin").unwrap())
        .and(Filter::eq(Kind::Tokens, "status", "active").unwrap());
    let found = page::run_within::<Token>(&store, ACROSS_WALLETS, &q, 1, "", NOW, BUDGET).unwrap();
    assert_eq!(found.items, vec![admin]);
}
