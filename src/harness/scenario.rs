//! Scenario files (`agentd harness run scenario.toml`): the agents to start
//! or reach, and steps run in order between them, each printed with pass or
//! fail and its time. The format is in README.md, "Harness and scenarios".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::HarnessError;
use crate::rpc::proto::RecordState;

mod run;

pub use run::run;

const DEFAULT_WITHIN: Duration = Duration::from_secs(10);
/// An invitation printed for an external peer: a person may be involved.
const DEFAULT_INVITE_WITHIN: Duration = Duration::from_secs(120);
const PING_WAIT_MS: u32 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad TOML, an unknown step or field, or a name nothing defined.
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

/// How a run went; the per-step lines are printed as they finish.
#[derive(Debug)]
pub struct Report {
    pub passed: usize,
    pub skipped: usize,
    /// The first failure (a step, or stopping the agents at the end).
    pub failure: Option<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    agents: BTreeMap<String, AgentSpec>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<Step>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSpec {
    /// `host:port` of an agent that already runs; without it one is started.
    grpc: Option<String>,
    /// Environment of a started agent (`AGENTD_*` config overrides).
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Connect(Connect),
    Invite(Invite),
    AcceptInvitation(AcceptInvitation),
    Ping(Ping),
    Offer(Offer),
    ReceiveOffer(ReceiveOffer),
    Accept(OnFlow),
    Reject(Reject),
    Issue(OnFlow),
    Wait(Wait),
    Expect(Expect),
    Credentials(Credentials),
    Kill(String),
    Stop(String),
    Restart(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Connect {
    inviter: String,
    invitee: String,
    #[serde(rename = "as")]
    name: String,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    agent: String,
    #[serde(rename = "as")]
    name: String,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptInvitation {
    agent: String,
    url: String,
    #[serde(rename = "as")]
    name: String,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ping {
    agent: String,
    connection: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Offer {
    from: String,
    connection: String,
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    automatic: bool,
    validity_secs: Option<u64>,
    #[serde(rename = "as")]
    name: String,
}

/// Names the next offer that arrives on a connection, e.g. from an
/// external issuer, so later steps can act on its flow.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveOffer {
    agent: String,
    connection: String,
    #[serde(rename = "as")]
    name: String,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnFlow {
    agent: String,
    flow: String,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reject {
    agent: String,
    flow: String,
    reason: Option<String>,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wait {
    agent: String,
    flow: String,
    #[serde(deserialize_with = "de_state")]
    state: RecordState,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    agent: String,
    flow: String,
    #[serde(deserialize_with = "de_state")]
    state: RecordState,
    ack: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    agent: String,
    count: usize,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn within(ms: Option<u64>) -> Duration {
    ms.map_or(DEFAULT_WITHIN, Duration::from_millis)
}

/// `CredentialReceived` for `RECORD_STATE_CREDENTIAL_RECEIVED`: the names
/// DESIGN.md and Hyperledger Identus use.
fn state_name(state: RecordState) -> String {
    state
        .as_str_name()
        .trim_start_matches("RECORD_STATE_")
        .split('_')
        .map(|word| word[..1].to_string() + &word[1..].to_lowercase())
        .collect()
}

fn states() -> impl Iterator<Item = RecordState> {
    (1..).map_while(|i| RecordState::try_from(i).ok())
}

fn parse_state(name: &str) -> std::result::Result<RecordState, String> {
    states().find(|s| state_name(*s) == name).ok_or_else(|| {
        let all: Vec<String> = states().map(state_name).collect();
        format!("unknown state `{name}`, expected one of {}", all.join(", "))
    })
}

fn de_state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RecordState, D::Error> {
    parse_state(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Step {
    /// What the step does, for its result line.
    fn describe(&self) -> String {
        match self {
            Step::Connect(s) => format!("connect {} → {} as {}", s.inviter, s.invitee, s.name),
            Step::Invite(s) => format!("invite {} as {}", s.agent, s.name),
            Step::AcceptInvitation(s) => format!("accept_invitation {} as {}", s.agent, s.name),
            Step::Ping(s) => format!("ping {} {}", s.agent, s.connection),
            Step::Offer(s) => format!(
                "offer {} {} as {}{}",
                s.from,
                s.connection,
                s.name,
                if s.automatic { " (automatic)" } else { "" }
            ),
            Step::ReceiveOffer(s) => {
                format!("receive_offer {} {} as {}", s.agent, s.connection, s.name)
            }
            Step::Accept(s) => format!("accept {} {}", s.agent, s.flow),
            Step::Reject(s) => format!("reject {} {}", s.agent, s.flow),
            Step::Issue(s) => format!("issue {} {}", s.agent, s.flow),
            Step::Wait(s) => format!("wait {} {} {}", s.agent, s.flow, state_name(s.state)),
            Step::Expect(s) => format!("expect {} {} {}", s.agent, s.flow, state_name(s.state)),
            Step::Credentials(s) => format!("credentials {} = {}", s.agent, s.count),
            Step::Kill(a) => format!("kill -9 {a}"),
            Step::Stop(a) => format!("stop {a}"),
            Step::Restart(a) => format!("restart {a}"),
        }
    }

    /// Every agent the step acts on.
    fn agents(&self) -> Vec<&str> {
        match self {
            Step::Connect(s) => vec![&s.inviter, &s.invitee],
            Step::Invite(Invite { agent, .. })
            | Step::AcceptInvitation(AcceptInvitation { agent, .. })
            | Step::Ping(Ping { agent, .. })
            | Step::Offer(Offer { from: agent, .. })
            | Step::ReceiveOffer(ReceiveOffer { agent, .. })
            | Step::Accept(OnFlow { agent, .. })
            | Step::Issue(OnFlow { agent, .. })
            | Step::Reject(Reject { agent, .. })
            | Step::Wait(Wait { agent, .. })
            | Step::Expect(Expect { agent, .. })
            | Step::Credentials(Credentials { agent, .. })
            | Step::Kill(agent)
            | Step::Stop(agent)
            | Step::Restart(agent) => vec![agent],
        }
    }
}

impl Scenario {
    /// Parses `text` and checks every name before anything starts, so a
    /// typo fails in a millisecond, not after agents were started.
    fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |line, message| ScenarioError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            // The steps are the only enum in the format: say "step" in
            // serde's enum messages.
            let message = if e.message().starts_with("wanted exactly 1 element") {
                "a [[step]] holds exactly one step, e.g. `connect = { … }`".to_string()
            } else {
                e.message().replace("unknown variant", "unknown step")
            };
            invalid(line, message)
        })?;
        // Which agents hold each connection, and which flows exist, so far.
        let mut connections: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut flows: Vec<&str> = Vec::new();
        for (i, step) in scenario.steps.iter().enumerate() {
            let line = line_of(text, step.span().start);
            let fail = |message: String| invalid(line, format!("step {}: {message}", i + 1));
            for agent in step.get_ref().agents() {
                let Some(spec) = scenario.agents.get(agent) else {
                    let known: Vec<&str> = scenario.agents.keys().map(String::as_str).collect();
                    return Err(fail(format!(
                        "unknown agent `{agent}` (agents: {})",
                        known.join(", ")
                    )));
                };
                let lifecycle = matches!(
                    step.get_ref(),
                    Step::Kill(_) | Step::Stop(_) | Step::Restart(_)
                );
                if lifecycle && spec.grpc.is_some() {
                    return Err(fail(format!(
                        "`{agent}` is an external agent (grpc = …): the scenario cannot stop or start it"
                    )));
                }
            }
            let connection_on = |agent: &str, name: &str| match connections.get(name) {
                Some(holders) if holders.contains(&agent) => Ok(()),
                Some(_) => Err(fail(format!(
                    "`{agent}` is not a party to connection `{name}`"
                ))),
                None => Err(fail(format!("no earlier step defines connection `{name}`"))),
            };
            let flow = |name: &str| {
                if flows.contains(&name) {
                    Ok(())
                } else {
                    Err(fail(format!("no earlier offer defines flow `{name}`")))
                }
            };
            let define = |name: &str| {
                if connections.contains_key(name) || flows.contains(&name) {
                    Err(fail(format!("`{name}` is already defined")))
                } else {
                    Ok(())
                }
            };
            match step.get_ref() {
                Step::Connect(s) => {
                    define(&s.name)?;
                    if s.inviter == s.invitee {
                        return Err(fail("an agent cannot connect to itself".into()));
                    }
                    connections.insert(&s.name, vec![&s.inviter, &s.invitee]);
                }
                Step::Invite(Invite { agent, name, .. })
                | Step::AcceptInvitation(AcceptInvitation { agent, name, .. }) => {
                    define(name)?;
                    connections.insert(name, vec![agent]);
                }
                Step::Ping(s) => connection_on(&s.agent, &s.connection)?,
                Step::Offer(Offer {
                    from: agent,
                    connection,
                    name,
                    ..
                })
                | Step::ReceiveOffer(ReceiveOffer {
                    agent,
                    connection,
                    name,
                    ..
                }) => {
                    connection_on(agent, connection)?;
                    define(name)?;
                    flows.push(name);
                }
                Step::Accept(OnFlow { flow: f, .. })
                | Step::Issue(OnFlow { flow: f, .. })
                | Step::Reject(Reject { flow: f, .. })
                | Step::Wait(Wait { flow: f, .. })
                | Step::Expect(Expect { flow: f, .. }) => flow(f)?,
                Step::Credentials(_) | Step::Kill(_) | Step::Stop(_) | Step::Restart(_) => {}
            }
        }
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match Scenario::parse(Path::new("s.toml"), text) {
            Ok(_) => panic!("parsed:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = "[agents.issuer]\n[agents.holder]\n\n";

    #[test]
    fn unknown_steps_and_fields_are_named_with_their_line() {
        let e = error(&format!("{HEAD}[[step]]\nfrobnicate = \"issuer\"\n"));
        assert!(e.starts_with("s.toml:5: unknown step `frobnicate`"), "{e}");
        assert!(e.contains("expected one of `connect`"), "{e}");

        let e = error(&format!(
            "{HEAD}[[step]]\nconnect = {{ inviter = \"issuer\", invitee = \"holder\", as = \"c\" }}\n\n\
             [[step]]\nping = {{ agent = \"issuer\", connection = \"c\", colour = \"red\" }}\n"
        ));
        assert!(e.starts_with("s.toml:8: unknown field `colour`"), "{e}");

        let e = error("[agents.a]\n[[step]]\nkill = \"a\"\nstop = \"a\"\n");
        assert!(
            e.starts_with("s.toml:2: a [[step]] holds exactly one step"),
            "{e}"
        );

        let e = error("[agents.a]\nport = 1\n");
        assert!(e.starts_with("s.toml:2: unknown field `port`"), "{e}");
    }

    #[test]
    fn undefined_names_are_refused_before_anything_starts() {
        let connect =
            "[[step]]\nconnect = { inviter = \"issuer\", invitee = \"holder\", as = \"c\" }\n";
        let e = error(&format!("{HEAD}{connect}[[step]]\nkill = \"holdr\"\n"));
        assert!(
            e.starts_with("s.toml:6: step 2: unknown agent `holdr` (agents: holder, issuer)"),
            "{e}"
        );
        let e = error(&format!(
            "{HEAD}{connect}[[step]]\naccept = {{ agent = \"holder\", flow = \"f\" }}\n"
        ));
        assert!(
            e.contains("step 2: no earlier offer defines flow `f`"),
            "{e}"
        );
        let e = error(&format!(
            "{HEAD}[[step]]\noffer = {{ from = \"issuer\", connection = \"c\", as = \"f\" }}\n"
        ));
        assert!(
            e.contains("s.toml:4: step 1: no earlier step defines connection `c`"),
            "{e}"
        );
        let e = error(&format!(
            "{HEAD}{connect}[[step]]\noffer = {{ from = \"issuer\", connection = \"c\", as = \"f\" }}\n\
             [[step]]\nwait = {{ agent = \"holder\", flow = \"f\", state = \"Done\" }}\n"
        ));
        assert!(
            e.starts_with("s.toml:9: unknown state `Done`, expected one of OfferPending"),
            "{e}"
        );
        let e = error("[agents.x]\ngrpc = \"127.0.0.1:1\"\n[[step]]\nrestart = \"x\"\n");
        assert!(
            e.contains("s.toml:3: step 1: `x` is an external agent"),
            "{e}"
        );
    }

    #[test]
    fn state_names_round_trip() {
        assert_eq!(
            state_name(RecordState::CredentialReceived),
            "CredentialReceived"
        );
        assert_eq!(
            parse_state("ProblemReportSent"),
            Ok(RecordState::ProblemReportSent)
        );
        assert_eq!(states().count(), 15);
    }
}
