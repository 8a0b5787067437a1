use std::collections::HashSet;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::testing;

/// The bitstring an encodedList carries, decoded the way a verifier would.
fn decode(encoded: &str) -> Vec<u8> {
    let zipped = URL_SAFE_NO_PAD
        .decode(encoded.strip_prefix('u').expect("multibase base64url"))
        .unwrap();
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut bits)
        .unwrap();
    bits
}

#[test]
fn encoded_lists_set_exactly_the_given_bits_most_significant_first() {
    let encoded = encode_list(CAPACITY, &[0, 9, CAPACITY - 1]).unwrap();
    let bits = decode(&encoded);
    assert_eq!(bits.len(), CAPACITY as usize / 8);
    assert_eq!(bits[0], 0x80);
    assert_eq!(bits[1], 0x40);
    assert_eq!(bits[bits.len() - 1], 0x01);
    let ones: u32 = bits.iter().map(|b| b.count_ones()).sum();
    assert_eq!(ones, 3);
    // An empty list compresses to almost nothing.
    assert!(encode_list(CAPACITY, &[]).unwrap().len() < 300);
}

#[test]
fn list_urls_sit_beside_the_didcomm_endpoint() {
    assert_eq!(
        list_url("https://agent.example/didcomm", "l1"),
        "https://agent.example/status/l1"
    );
    assert_eq!(
        list_url("http://127.0.0.1:8080/", "l1"),
        "http://127.0.0.1:8080/status/l1"
    );
    let slot = StatusSlot {
        list_id: "l1".into(),
        index: 42,
    };
    let e = entry("https://agent.example/didcomm", &slot);
    assert_eq!(e["id"], "https://agent.example/status/l1#42");
    assert_eq!(e["statusListIndex"], "42");
    assert_eq!(e["type"], "BitstringStatusListEntry");
}

/// Allocates `n` indices for one issuer, each in its own transaction.
fn allocate_n(t: &testing::TestCore, n: u32, capacity: u32) -> Vec<StatusSlot> {
    (0..n)
        .map(|_| {
            t.core
                .store
                .transact(|tx| allocate(tx, "default", "did:key:zIssuer", capacity))
                .unwrap()
        })
        .collect()
}

#[test]
fn indices_are_never_reused_and_a_full_list_is_followed_by_a_new_one() {
    let t = testing::core();
    let slots = allocate_n(&t, 20, 8);
    let lists: Vec<&str> = slots.iter().map(|s| s.list_id.as_str()).collect();
    // 8 in the first list, 8 in the second, 4 in the third.
    assert!(lists[..8].iter().all(|l| *l == lists[0]));
    assert!(lists[8..16].iter().all(|l| *l == lists[8]));
    assert!(lists[16..].iter().all(|l| *l == lists[16]));
    assert!(lists[0] != lists[8] && lists[8] != lists[16] && lists[0] != lists[16]);
    let distinct: HashSet<(&str, u32)> = slots
        .iter()
        .map(|s| (s.list_id.as_str(), s.index))
        .collect();
    assert_eq!(distinct.len(), 20, "an index was given twice");
    assert!(slots.iter().all(|s| s.index < 8));
    let full = t.core.store.status_list(lists[0]).unwrap().unwrap();
    assert_eq!((full.allocated, full.capacity), (8, 8));
}

#[test]
fn indices_are_drawn_at_random() {
    let t = testing::core();
    let slots = allocate_n(&t, 64, CAPACITY);
    let indices: Vec<u32> = slots.iter().map(|s| s.index).collect();
    // In issuance order they would be 0..64; at random, they spread over
    // the list and are not sorted.
    assert!(indices.iter().any(|i| *i > CAPACITY / 2), "{indices:?}");
    assert!(indices.windows(2).any(|w| w[0] > w[1]), "{indices:?}");
    let other = allocate_n(&testing::core(), 64, CAPACITY);
    assert_ne!(indices, other.iter().map(|s| s.index).collect::<Vec<_>>());
}
