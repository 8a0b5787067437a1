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
        filter: Some(Filter::Cond(
            Cond::new(Kind::Records, "claims.name", Op::Eq, text("nobody")).unwrap(),
        )),
        sort: vec![],
    };
    let e = page::run_within::<CredentialRecord>(&store, WALLET, &claim, 20, "", NOW, BUDGET)
        .unwrap_err();
    assert!(
        matches!(&e, crate::error::Error::ResourceExhausted(m) if m.contains("2000 index keys or 100 records")),
        "{e:?}"
    );
    let indexed = Query {
        filter: Some(Filter::Cond(
            Cond::new(Kind::Records, "thid", Op::Eq, text("thread-3")).unwrap(),
        )),
        sort: vec![],
    };
    let found: Found<CredentialRecord> =
        page::run_within(&store, WALLET, &indexed, 20, "", NOW, BUDGET).unwrap();
    assert_eq!(found.total_size as usize, expected(&docs, &indexed).len());
}

/// Past the exact bound a total is estimated, marked so, and near the
/// truth for matches spread evenly over time.
#[test]
fn totals_past_the_bound_are_estimates() {
    let docs: Vec<CredentialRecord> = (0..3_000)
        .map(|i| {
            let mut r = record(i, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            r.wallet_id = WALLET.into();
            r.created_at_ms = 1_000_000 + i as i64;
            r
        })
        .collect();
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
        filter: Some(Filter::Cond(
            Cond::new(Kind::Records, "thid", Op::Eq, text("thread-3")).unwrap(),
        )),
        sort: vec![],
    };
    let found: Found<CredentialRecord> = run(&store, WALLET, &few, 10, "", NOW).unwrap();
    assert!(found.total_exact);
    assert_eq!(found.total_size as usize, expected(&docs, &few).len());
}

/// A first page's total that counting could not finish within its bound
/// is estimated after a short probe, not after reading the whole bound:
/// a page over 3,000 matches reads about a page of keys more. Matches
/// that stop soon after the page are still counted exactly, and a total
/// that counting can finish is counted exactly.
#[test]
fn a_total_counting_would_not_finish_is_estimated_after_a_probe() {
    let docs: Vec<CredentialRecord> = (0..3_000)
        .map(|i| {
            let mut r = record(i, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            r.wallet_id = WALLET.into();
            r.created_at_ms = 1_000_000 + i as i64;
            // A connection busy only at first: 30 records among the first 40.
            r.connection_id = if i < 40 && i % 4 != 3 { "early" } else { "c0" }.into();
            r
        })
        .collect();
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    let every = Query {
        filter: None,
        sort: vec![],
    };
    let first: Found<CredentialRecord> = run(&store, WALLET, &every, 20, "", NOW).unwrap();
    let later: Found<CredentialRecord> =
        run(&store, WALLET, &every, 20, &first.next_token, NOW).unwrap();
    for page in [&first, &later] {
        assert!(!page.total_exact);
        assert!(
            (2_900..=3_100).contains(&page.total_size),
            "{}",
            page.total_size
        );
    }
    // The page, the one after it, the probe's 50, the wallet's two edges:
    // not the 500 keys counting would have read before estimating.
    assert!(first.keys_read < 100, "{} keys read", first.keys_read);
    assert_eq!(later.items[0].id, "rec-0020");
    let early = Query {
        filter: Some(Filter::Cond(
            Cond::new(Kind::Records, "connection_id", Op::Eq, text("early")).unwrap(),
        )),
        sort: vec![],
    };
    let found: Found<CredentialRecord> = run(&store, WALLET, &early, 20, "", NOW).unwrap();
    assert!(found.total_exact);
    assert_eq!(found.total_size, 30);
    // A condition no index answers, in a wallet of 300: the page loads
    // about 80 records to find its 21 matches; counting would load its
    // 100 and stop short of the other 220.
    let (_dir, mid) = store_with(&docs[..300], |tx, r| tx.put_record(None, r));
    let claim = Query {
        filter: Some(Filter::Cond(
            Cond::new(Kind::Records, "claims.name", Op::Eq, text("Alice")).unwrap(),
        )),
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
    assert!(found.docs_read < 150, "{} records read", found.docs_read);
    let (_dir, small) = store_with(&docs[..400], |tx, r| tx.put_record(None, r));
    let found: Found<CredentialRecord> = run(&small, WALLET, &every, 20, "", NOW).unwrap();
    assert!(found.total_exact);
    assert_eq!(found.total_size, 400);
}

/// A wide time range is checked on the documents; its total is never
/// below what the page found, even when counting stops early.
#[test]
fn a_wide_time_range_streams_and_counts_at_least_its_page() {
    let docs: Vec<CredentialRecord> = (0..1_500)
        .map(|i| {
            let mut r = record(i, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            r.wallet_id = WALLET.into();
            r.created_at_ms = 1_000_000 + i as i64;
            r.updated_at_ms = 2_000_000 + i as i64 * 1_000;
            r
        })
        .collect();
    let (_dir, store) = store_with(&docs, |tx, r| tx.put_record(None, r));
    let q = Query {
        filter: Some(Filter::Cond(
            Cond::new(Kind::Records, "updated_at", Op::Gte, Value::Time(2_000_000)).unwrap(),
        )),
        sort: vec![SortKey::new(Kind::Records, "created_at", true).unwrap()],
    };
    let found: Found<CredentialRecord> = run(&store, WALLET, &q, 20, "", NOW).unwrap();
    assert_eq!(found.items.len(), 20);
    assert_eq!(found.items[0].id, "rec-1499");
    assert!(!found.total_exact);
    assert!(found.total_size >= 21, "{}", found.total_size);
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
