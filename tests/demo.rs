//! `agentd demo` runs end to end on a fresh machine and shows a verified
//! credential.

#[test]
fn demo_issues_and_verifies_a_credential() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .arg("demo")
        .output()
        .expect("agentd demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        // Which intermediate states show depends on timing (a reply can
        // overtake the outbox's delivery note); these always do.
        "(new) → OFFER_PENDING",
        "(new) → OFFER_RECEIVED",
        "→ CREDENTIAL_RECEIVED",
        "→ CREDENTIAL_SENT",
        "\"UniversityDegreeCredential\"",
        "✓ signature: EdDSA",
        "✓ subject",
        "storage removed",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}
