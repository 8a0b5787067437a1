use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "t".into(),
        message: e.to_string(),
    })?;
    c.validate()?;
    Ok(c)
}

#[test]
fn shipped_agent_toml_is_valid() {
    parse(include_str!("../../agent.toml")).unwrap();
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = parse("[storage]\npaht = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("paht"), "{e}");
    let e = parse("[didcomm]\nlisten = \"nope\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("didcomm.listen"), "{e}");
    let e = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
    assert!(e.contains("log.format"), "{e}");
    let e = parse("[didcomm]\npublic_endpoint = \"ftp://x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("public_endpoint"), "{e}");
    let e = parse("[storage]\ncache_mib = 1\n").unwrap_err().to_string();
    assert!(e.contains("storage.cache_mib"), "{e}");
}

#[test]
fn tls_files_come_in_pairs() {
    for (text, named) in [
        ("cert_file = \"c.pem\"", "grpc.tls.key_file"),
        ("key_file = \"k.pem\"", "grpc.tls.cert_file"),
        ("client_ca_file = \"ca.pem\"", "grpc.tls.client_ca_file"),
        ("cert = \"c.pem\"", "cert"),
    ] {
        let e = parse(&format!("[grpc.tls]\n{text}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(named), "{text}: {e}");
    }
}

#[test]
fn a_control_plane_off_loopback_needs_tls_and_tokens_or_insecure() {
    for listen in ["0.0.0.0:50051", "[::]:50051", "192.0.2.1:50051"] {
        let e = parse(&format!("[grpc]\nlisten = \"{listen}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("grpc.listen"), "{e}");
        assert!(
            e.contains("grpc.tls.cert_file") && e.contains("grpc.insecure = true"),
            "{e}"
        );
        parse(&format!("[grpc]\nlisten = \"{listen}\"\ninsecure = true\n")).unwrap();
    }
    parse("[grpc]\nlisten = \"[::1]:50051\"\n").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let mut c = Config::default();
    c.apply_env(|v| match v {
        "AGENTD_GRPC_LISTEN" => Some("0.0.0.0:50051".into()),
        "AGENTD_GRPC_TLS_CERT_FILE" => Some(cert.display().to_string()),
        "AGENTD_GRPC_TLS_KEY_FILE" => Some(key.display().to_string()),
        _ => None,
    })
    .unwrap();
    c.validate().unwrap();
    assert!(c.grpc_tls().unwrap().is_some());
    // TLS without tokens is still open to anyone who can connect.
    c.grpc.auth = "none".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("grpc.auth = \"tokens\""), "{e}");
    c.grpc.insecure = true;
    c.validate().unwrap();
}

#[test]
fn environment_overrides_config() {
    let mut c = Config::default();
    c.apply_env(|v| match v {
        "AGENTD_GRPC_LISTEN" => Some("127.0.0.1:1".into()),
        "AGENTD_DIDCOMM_MAX_BODY_BYTES" => Some("2048".into()),
        "AGENTD_TRACES_OTLP_ENDPOINT" => Some("https://collector.example:4317".into()),
        "AGENTD_TRACES_SERVICE_NAME" => Some("issuer-a".into()),
        "AGENTD_STORAGE_CACHE_MIB" => Some("6144".into()),
        _ => None,
    })
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.grpc.listen, "127.0.0.1:1");
    assert_eq!(c.didcomm.max_body_bytes, 2048);
    assert_eq!(
        c.traces.otlp_endpoint.as_deref(),
        Some("https://collector.example:4317")
    );
    assert_eq!(c.traces.service_name, "issuer-a");
    assert_eq!(c.storage.cache_mib, 6144);
    let e = c
        .apply_env(|v| (v == "AGENTD_OUTBOX_MAX_RETRIES").then(|| "many".into()))
        .unwrap_err();
    assert!(e.to_string().contains("outbox.max_retries"));
}

#[test]
fn traces_are_off_unless_an_endpoint_is_set() {
    let c = parse(include_str!("../../agent.toml")).unwrap();
    assert_eq!(c.traces.otlp_endpoint, None);
    assert_eq!(Config::default().traces.otlp_endpoint, None);
    assert_eq!(c.traces.service_name, "agentd");

    let c = parse("[traces]\notlp_endpoint = \"http://127.0.0.1:4317\"\n").unwrap();
    assert_eq!(
        c.traces.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4317")
    );
    for bad in ["127.0.0.1:4317", "grpc://collector:4317", "http://", "nope"] {
        let e = parse(&format!("[traces]\notlp_endpoint = {bad:?}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("traces.otlp_endpoint"), "{bad}: {e}");
    }
    let e = parse("[traces]\nservice_name = \"\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("traces.service_name"), "{e}");
}
