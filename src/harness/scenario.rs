//! Scenario files (`agentd harness run scenario.toml`): the agents to start
//! or reach, and steps run in order between them, each printed with pass or
//! fail and its time. The format is in README.md, "Harness and scenarios".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;

use super::{Clients, HarnessError, ProcessAgent};
use crate::rpc::proto::{self, RecordState};

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
    state: String,
    within_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    agent: String,
    flow: String,
    state: String,
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
            Step::Accept(s) => format!("accept {} {}", s.agent, s.flow),
            Step::Reject(s) => format!("reject {} {}", s.agent, s.flow),
            Step::Issue(s) => format!("issue {} {}", s.agent, s.flow),
            Step::Wait(s) => format!("wait {} {} {}", s.agent, s.flow, s.state),
            Step::Expect(s) => format!("expect {} {} {}", s.agent, s.flow, s.state),
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
            // The steps are the only enum in the format.
            invalid(line, e.message().replace("unknown variant", "unknown step"))
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
            let state = |name: &str| parse_state(name).map(drop).map_err(&fail);
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
                Step::Offer(s) => {
                    connection_on(&s.from, &s.connection)?;
                    define(&s.name)?;
                    flows.push(&s.name);
                }
                Step::Accept(OnFlow { flow: f, .. })
                | Step::Issue(OnFlow { flow: f, .. })
                | Step::Reject(Reject { flow: f, .. }) => flow(f)?,
                Step::Wait(Wait {
                    flow: f, state: s, ..
                })
                | Step::Expect(Expect {
                    flow: f, state: s, ..
                }) => {
                    flow(f)?;
                    state(s)?;
                }
                Step::Credentials(_) | Step::Kill(_) | Step::Stop(_) | Step::Restart(_) => {}
            }
        }
        Ok(scenario)
    }
}

/// A scenario's agent: started by the run, or reached at its address.
enum Agent {
    Started(ProcessAgent),
    External(String),
}

impl Agent {
    fn grpc(&self) -> String {
        match self {
            Agent::Started(a) => a.grpc.to_string(),
            Agent::External(addr) => addr.clone(),
        }
    }
}

/// What the steps so far made: connection ids per (name, agent), flows' thids.
struct Run {
    agents: BTreeMap<String, Agent>,
    /// One channel per agent, dropped when the agent's process goes away.
    clients: HashMap<String, Clients>,
    connections: HashMap<(String, String), String>,
    flows: HashMap<String, String>,
}

/// Runs the scenario file at `path`, starting its agents from `binary`
/// (the `agentd` executable), printing one line per step. Steps stop at the
/// first failure; the agents started are stopped at the end either way.
pub async fn run(path: &Path, binary: &Path) -> Result<Report, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let scenario = Scenario::parse(path, &text)?;
    println!("scenario {}", path.display());
    let started = Instant::now();
    let mut run = Run {
        agents: BTreeMap::new(),
        clients: HashMap::new(),
        connections: HashMap::new(),
        flows: HashMap::new(),
    };
    // Started one by one: the run owns each as soon as it exists, so a
    // failed start still tears down the ones before it (on drop).
    for (name, spec) in scenario.agents {
        let agent = match spec.grpc {
            Some(addr) => Agent::External(addr),
            None => {
                let env: Vec<(&str, &str)> = spec
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let a = ProcessAgent::start(binary, &name, &env).await?;
                println!(
                    "  agent {name:<10} pid {:<7} gRPC {}  DIDComm {}",
                    a.pid().unwrap_or_default(),
                    a.grpc,
                    a.endpoint
                );
                Agent::Started(a)
            }
        };
        run.agents.insert(name, agent);
    }
    println!("  agents ready in {} ms", started.elapsed().as_millis());

    let total = scenario.steps.len();
    let mut report = Report {
        passed: 0,
        skipped: 0,
        failure: None,
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        let step = step.get_ref();
        let what = step.describe();
        let t = Instant::now();
        let result = run.step(step).await;
        let ms = t.elapsed().as_millis();
        match result {
            Ok(()) => {
                println!("  ✓ step {:<3} {what:<48} {ms:>6} ms", i + 1);
                report.passed += 1;
            }
            Err(e) => {
                println!("  ✗ step {:<3} {what:<48} {ms:>6} ms: {e}", i + 1);
                report.failure = Some(format!("step {} ({what}): {e}", i + 1));
                report.skipped = total - i - 1;
                if report.skipped > 0 {
                    println!("  - steps {}–{total} skipped", i + 2);
                }
                break;
            }
        }
    }
    for (name, agent) in &mut run.agents {
        if let Agent::Started(a) = agent
            && let Err(e) = a.stop().await
        {
            println!("  ✗ stopping {name}: {e}");
            report
                .failure
                .get_or_insert_with(|| format!("stopping {name}: {e}"));
        }
    }
    println!(
        "  {}: {} passed, {} failed, {} skipped in {} ms",
        if report.ok() { "PASS" } else { "FAIL" },
        report.passed,
        usize::from(report.passed + report.skipped < total),
        report.skipped,
        started.elapsed().as_millis()
    );
    Ok(report)
}

impl Run {
    async fn clients(&mut self, agent: &str) -> Result<Clients, HarnessError> {
        if let Some(c) = self.clients.get(agent) {
            return Ok(c.clone());
        }
        let c = Clients::connect(&self.agents[agent].grpc()).await?;
        self.clients.insert(agent.to_string(), c.clone());
        Ok(c)
    }

    fn started(&mut self, agent: &str) -> &mut ProcessAgent {
        self.clients.remove(agent);
        match self.agents.get_mut(agent) {
            Some(Agent::Started(a)) => a,
            // Scenario::parse refuses lifecycle steps on external agents.
            _ => unreachable!("{agent} is not started by the scenario"),
        }
    }

    fn connection(&self, name: &str, agent: &str) -> String {
        self.connections[&(name.to_string(), agent.to_string())].clone()
    }

    /// The record of `flow` on `c`'s default wallet, if there is one yet.
    async fn record(
        &self,
        c: &mut Clients,
        flow: &str,
    ) -> Result<Option<proto::CredentialRecord>, HarnessError> {
        Ok(c.issuance
            .list_records(proto::ListRecordsRequest {
                thid: self.flows[flow].clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .records
            .pop())
    }

    /// Waits for `flow` to reach `state` on `c`; a timeout says where it is.
    async fn wait(
        &self,
        c: &mut Clients,
        flow: &str,
        state: RecordState,
        within: Duration,
    ) -> Result<proto::RecordEvent, HarnessError> {
        match super::wait_for_state(c, "", &self.flows[flow], state, within).await {
            Err(HarnessError::Timeout(_)) => {
                let now = match self.record(c, flow).await? {
                    Some(r) => RecordState::try_from(r.state).map_or("?".into(), state_name),
                    None => "no record".into(),
                };
                Err(HarnessError::Timeout(format!(
                    "{flow} not {} after {within:?} (it is {now})",
                    state_name(state)
                )))
            }
            other => other,
        }
    }

    async fn step(&mut self, step: &Step) -> Result<(), HarnessError> {
        match step {
            Step::Connect(s) => {
                let mut a = self.clients(&s.inviter).await?;
                let mut b = self.clients(&s.invitee).await?;
                let (x, y) = super::connect(&mut a, "", &mut b, "", within(s.within_ms)).await?;
                self.connections
                    .insert((s.name.clone(), s.inviter.clone()), x.id);
                self.connections
                    .insert((s.name.clone(), s.invitee.clone()), y.id);
            }
            Step::Invite(s) => {
                let mut c = self.clients(&s.agent).await?;
                let invitation = c
                    .connections
                    .create_invitation(proto::CreateInvitationRequest {
                        label: "agentd harness".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                println!(
                    "    invitation from {}: {}",
                    s.agent, invitation.invitation_url
                );
                let id = invitation.connection.unwrap_or_default().id;
                let within = s
                    .within_ms
                    .map_or(DEFAULT_INVITE_WITHIN, Duration::from_millis);
                super::wait_active(&mut c, "", &id, within).await?;
                self.connections
                    .insert((s.name.clone(), s.agent.clone()), id);
            }
            Step::AcceptInvitation(s) => {
                let mut c = self.clients(&s.agent).await?;
                let connection = c
                    .connections
                    .accept_invitation(proto::AcceptInvitationRequest {
                        invitation_url: s.url.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                super::wait_active(&mut c, "", &connection.id, within(s.within_ms)).await?;
                self.connections
                    .insert((s.name.clone(), s.agent.clone()), connection.id);
            }
            Step::Ping(s) => {
                let pong = self
                    .clients(&s.agent)
                    .await?
                    .connections
                    .ping(proto::PingRequest {
                        connection_id: self.connection(&s.connection, &s.agent),
                        wait_ms: PING_WAIT_MS,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                if !pong.response_received {
                    return Err(HarnessError::Check(format!(
                        "no ping response within {PING_WAIT_MS} ms"
                    )));
                }
            }
            Step::Offer(s) => {
                let record = self
                    .clients(&s.from)
                    .await?
                    .issuance
                    .create_offer(proto::CreateOfferRequest {
                        connection_id: self.connection(&s.connection, &s.from),
                        claims_json: serde_json::Value::Object(s.claims.clone()).to_string(),
                        types: s.types.clone(),
                        automatic_issuance: s.automatic,
                        validity_period_secs: s.validity_secs.unwrap_or_default(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                self.flows.insert(s.name.clone(), record.thid);
            }
            Step::Accept(s) => {
                let mut c = self.clients(&s.agent).await?;
                let offer = self
                    .wait(
                        &mut c,
                        &s.flow,
                        RecordState::OfferReceived,
                        within(s.within_ms),
                    )
                    .await?;
                c.holder
                    .accept_offer(proto::AcceptOfferRequest {
                        record_id: offer.record_id,
                        ..Default::default()
                    })
                    .await?;
            }
            Step::Reject(s) => {
                let mut c = self.clients(&s.agent).await?;
                let offer = self
                    .wait(
                        &mut c,
                        &s.flow,
                        RecordState::OfferReceived,
                        within(s.within_ms),
                    )
                    .await?;
                c.holder
                    .reject_offer(proto::RejectOfferRequest {
                        record_id: offer.record_id,
                        reason: s.reason.clone().unwrap_or_default(),
                        ..Default::default()
                    })
                    .await?;
            }
            Step::Issue(s) => {
                let mut c = self.clients(&s.agent).await?;
                let request = self
                    .wait(
                        &mut c,
                        &s.flow,
                        RecordState::RequestReceived,
                        within(s.within_ms),
                    )
                    .await?;
                c.issuance
                    .issue_credential(proto::IssueCredentialRequest {
                        record_id: request.record_id,
                        ..Default::default()
                    })
                    .await?;
            }
            Step::Wait(s) => {
                let mut c = self.clients(&s.agent).await?;
                let state = parse_state(&s.state).map_err(HarnessError::Check)?;
                self.wait(&mut c, &s.flow, state, within(s.within_ms))
                    .await?;
            }
            Step::Expect(s) => {
                let mut c = self.clients(&s.agent).await?;
                let want = parse_state(&s.state).map_err(HarnessError::Check)?;
                let Some(r) = self.record(&mut c, &s.flow).await? else {
                    return Err(HarnessError::Check(format!(
                        "{} has no record of {}",
                        s.agent, s.flow
                    )));
                };
                let is = RecordState::try_from(r.state).map_or("?".into(), state_name);
                if r.state != want as i32 {
                    return Err(HarnessError::Check(format!("{} is {is}", s.flow)));
                }
                if let Some(ack) = s.ack.filter(|ack| *ack != r.ack_received) {
                    return Err(HarnessError::Check(format!(
                        "{} ack_received is {}, expected {ack}",
                        s.flow, r.ack_received
                    )));
                }
            }
            Step::Credentials(s) => {
                let mut c = self.clients(&s.agent).await?;
                let (mut count, mut token) = (0, String::new());
                loop {
                    let page = c
                        .holder
                        .list_credentials(proto::ListCredentialsRequest {
                            r#type: s.kind.clone().unwrap_or_default(),
                            page: Some(proto::PageRequest {
                                page_size: 100,
                                page_token: token,
                            }),
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    count += page.credentials.len();
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                if count != s.count {
                    return Err(HarnessError::Check(format!(
                        "{} holds {count} credentials",
                        s.agent
                    )));
                }
            }
            Step::Kill(agent) => self.started(agent).kill().await?,
            Step::Stop(agent) => self.started(agent).stop().await?,
            Step::Restart(agent) => self.started(agent).restart().await?,
        }
        Ok(())
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
            e.contains("step 3: unknown state `Done`, expected one of OfferPending"),
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
        assert_eq!(states().count(), 14);
    }
}
