//! Running a parsed scenario: starting its agents, executing the steps
//! in order with one result line each, and stopping the agents again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    DEFAULT_INVITE_WITHIN, PING_WAIT_MS, Report, Scenario, ScenarioError, Step, state_name, within,
};
use crate::harness::{self, Clients, HarnessError, ProcessAgent};
use crate::rpc::proto::{self, RecordState};

/// A scenario's agent: started by the run, or reached at its address.
enum Agent {
    Started(Box<ProcessAgent>),
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
                Agent::Started(Box::new(a))
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
                match report.skipped {
                    0 => {}
                    1 => println!("  - step {total} skipped"),
                    _ => println!("  - steps {}–{total} skipped", i + 2),
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

    /// Waits until `flow` reaches `state` on `agent`; returns clients for
    /// the agent and the event. A timeout says where the flow is instead.
    async fn reached(
        &mut self,
        agent: &str,
        flow: &str,
        state: RecordState,
        within_ms: Option<u64>,
    ) -> Result<(Clients, proto::RecordEvent), HarnessError> {
        let mut c = self.clients(agent).await?;
        let within = within(within_ms);
        match harness::wait_for_state(&mut c, "", &self.flows[flow], state, within).await {
            Ok(event) => Ok((c, event)),
            Err(HarnessError::Timeout(_)) => {
                let now = match self.record(&mut c, flow).await? {
                    Some(r) => RecordState::try_from(r.state).map_or("?".into(), state_name),
                    None => "no record".into(),
                };
                Err(HarnessError::Timeout(format!(
                    "{flow} not {} after {within:?} (it is {now})",
                    state_name(state)
                )))
            }
            Err(e) => Err(e),
        }
    }

    async fn step(&mut self, step: &Step) -> Result<(), HarnessError> {
        match step {
            Step::Connect(s) => {
                let mut a = self.clients(&s.inviter).await?;
                let mut b = self.clients(&s.invitee).await?;
                let (x, y) = harness::connect(&mut a, "", &mut b, "", within(s.within_ms)).await?;
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
                harness::wait_active(&mut c, "", &id, within).await?;
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
                harness::wait_active(&mut c, "", &connection.id, within(s.within_ms)).await?;
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
            Step::ReceiveOffer(s) => {
                let mut c = self.clients(&s.agent).await?;
                let connection_id = self.connection(&s.connection, &s.agent);
                let within = s
                    .within_ms
                    .map_or(DEFAULT_INVITE_WITHIN, Duration::from_millis);
                let deadline = Instant::now() + within;
                let thid = loop {
                    let records = c
                        .issuance
                        .list_records(proto::ListRecordsRequest {
                            connection_id: connection_id.clone(),
                            role: proto::Role::Holder as i32,
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .records;
                    let known =
                        |r: &&proto::CredentialRecord| self.flows.values().any(|t| *t == r.thid);
                    if let Some(r) = records.iter().find(|r| !known(r)) {
                        break r.thid.clone();
                    }
                    if Instant::now() > deadline {
                        return Err(HarnessError::Timeout(format!(
                            "no new offer on {} within {within:?}",
                            s.connection
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                self.flows.insert(s.name.clone(), thid);
            }
            Step::Accept(s) => {
                let (mut c, offer) = self
                    .reached(&s.agent, &s.flow, RecordState::OfferReceived, s.within_ms)
                    .await?;
                c.holder
                    .accept_offer(proto::AcceptOfferRequest {
                        record_id: offer.record_id,
                        ..Default::default()
                    })
                    .await?;
            }
            Step::Reject(s) => {
                let (mut c, offer) = self
                    .reached(&s.agent, &s.flow, RecordState::OfferReceived, s.within_ms)
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
                let (mut c, request) = self
                    .reached(&s.agent, &s.flow, RecordState::RequestReceived, s.within_ms)
                    .await?;
                c.issuance
                    .issue_credential(proto::IssueCredentialRequest {
                        record_id: request.record_id,
                        ..Default::default()
                    })
                    .await?;
            }
            Step::Wait(s) => {
                self.reached(&s.agent, &s.flow, s.state, s.within_ms)
                    .await?;
            }
            Step::Expect(s) => {
                let mut c = self.clients(&s.agent).await?;
                let Some(r) = self.record(&mut c, &s.flow).await? else {
                    return Err(HarnessError::Check(format!(
                        "{} has no record of {}",
                        s.agent, s.flow
                    )));
                };
                let is = RecordState::try_from(r.state).map_or("?".into(), state_name);
                if r.state != s.state as i32 {
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
