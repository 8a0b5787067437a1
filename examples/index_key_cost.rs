//! What one more index key costs sled 0.34, against the record it is
//! written with: issue 20's upkeep figures come down to this.
//!
//! `cargo run --release --example index_key_cost [records]`
//!
//! Each variant writes the same records (2,500 bytes, the size of an
//! issuance record) in transactions of 20, as group commit does under
//! load, to a fresh database, with 0 or 6 index keys each:
//!
//! - keys shaped like agentd's (about 110 bytes: kind, wallet, field,
//!   value, creation time, record id; empty value), in a transaction;
//! - the same keys cut to 16 bytes, in a transaction;
//! - the long keys with `Tree::apply_batch`, no transaction (so no read
//!   before each write), which is not atomic across trees: it only shows
//!   what a store that wrote a batch without reading would save.
//!
//! The variants run in turn, three rounds, so a noisy machine shows in the
//! spread rather than in one variant.

use std::time::Instant;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

const WALLET: &str = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
const BATCH: usize = 20;
const FIELDS: usize = 6;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Transaction,
    ShortKeys,
    BatchNoRead,
}

fn record_key(i: usize) -> (Vec<u8>, String) {
    let id = format!(
        "{:08x}-5b7d-4e8f-9a0b-{i:012x}",
        i.wrapping_mul(2_654_435_761) % 0xffff_ffff
    );
    ([WALLET.as_bytes(), id.as_bytes()].concat(), id)
}

fn index_key(way: Way, i: usize, field: usize, id: &str) -> Vec<u8> {
    let created = 1_764_000_000_000u64 + i as u64;
    if way == Way::ShortKeys {
        let mut k = vec![b'r', field as u8, (i % 7) as u8, 0];
        k.extend(&created.to_be_bytes()[..6]);
        k.extend(&(i as u64).to_be_bytes()[2..]);
        return k;
    }
    let mut k = vec![b'r'];
    k.extend(WALLET.as_bytes());
    k.extend([0, 1, field as u8, 1]);
    k.extend(format!("value-{}", i % 7).as_bytes());
    k.extend([0, 1]);
    k.extend(created.to_be_bytes());
    k.extend(id.as_bytes());
    k
}

/// Seconds to write `n` records with `keys` index keys each.
fn run(way: Way, keys: usize, n: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!("agentd-index-key-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(1 << 30)
        .open()
        .expect("open sled");
    let trees = [
        db.open_tree("records").expect("tree"),
        db.open_tree("index").expect("tree"),
    ];
    let value = vec![b'x'; 2_500];
    let started = Instant::now();
    for first in (0..n).step_by(BATCH) {
        let batch: Vec<_> = (first..first + BATCH)
            .map(|i| {
                let (k, id) = record_key(i);
                let ix: Vec<_> = (0..keys).map(|f| index_key(way, i, f, &id)).collect();
                (k, ix)
            })
            .collect();
        if way == Way::BatchNoRead {
            let (mut records, mut index) = (sled::Batch::default(), sled::Batch::default());
            for (k, ix) in &batch {
                records.insert(k.as_slice(), value.as_slice());
                ix.iter().for_each(|x| index.insert(x.as_slice(), &[][..]));
            }
            trees[0].apply_batch(records).expect("batch");
            trees[1].apply_batch(index).expect("batch");
            continue;
        }
        trees
            .as_slice()
            .transaction(|t| {
                for (k, ix) in &batch {
                    t[0].insert(k.as_slice(), value.as_slice())?;
                    for x in ix {
                        t[1].insert(x.as_slice(), &[][..])?;
                    }
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .expect("transaction");
    }
    let took = started.elapsed().as_secs_f64();
    drop(trees);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    took
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40_000)
        .max(BATCH);
    println!(
        "{n} records of 2,500 bytes, transactions of {BATCH}, {FIELDS} index keys each or none"
    );
    println!(
        "round  way                      µs/record bare  µs/record indexed  µs/key  key ÷ record"
    );
    for round in 1..=3 {
        for (way, name) in [
            (Way::Transaction, "transaction, ~110 B keys"),
            (Way::ShortKeys, "transaction, 16 B keys"),
            (Way::BatchNoRead, "batch, no read, ~110 B"),
        ] {
            let bare = run(way, 0, n) / n as f64 * 1e6;
            let indexed = run(way, FIELDS, n) / n as f64 * 1e6;
            let key = (indexed - bare) / FIELDS as f64;
            println!(
                "{round:>5}  {name:<24} {bare:>15.1} {indexed:>18.1} {key:>7.1} {:>13.2}",
                key / bare
            );
        }
    }
}
