use super::status::{bit, decode_list};

#[test]
fn an_encoded_list_decodes_to_the_bits_that_were_set() {
    let set = [0u32, 7, 8, 100_000, 131_071];
    let encoded = crate::status::encode_list(crate::status::CAPACITY, &set).unwrap();
    let bits = decode_list(&encoded).unwrap();
    assert_eq!(bits.len() * 8, crate::status::CAPACITY as usize);
    for i in 0..crate::status::CAPACITY as u64 {
        assert_eq!(bit(&bits, i), Some(set.contains(&(i as u32))), "bit {i}");
    }
    assert_eq!(bit(&bits, crate::status::CAPACITY as u64), None);
}

#[test]
fn a_list_that_expands_too_far_is_refused() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 9 * 1024 * 1024]).unwrap();
    let zipped = gz.finish().unwrap();
    assert!(zipped.len() < 64 * 1024, "a small body");
    use base64::Engine;
    let encoded = format!(
        "u{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(zipped)
    );
    let err = decode_list(&encoded).unwrap_err();
    assert!(err.contains("expands past"), "{err}");
    assert!(decode_list("u!!!").unwrap_err().contains("base64url"));
    assert!(decode_list("uAAAA").unwrap_err().contains("GZIP"));
}
