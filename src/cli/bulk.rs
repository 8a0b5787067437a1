//! `agentd offer claim-link` (a URL and its QR codes) and `agentd offer
//! bulk FILE`: CreateOffers from JSON Lines, one offer per
//! line in CreateOfferRequest's JSON form (proto field names), e.g.
//! `{"connection_id":"…","claims":{"name":"Alice"},"template_id":"…","correlation_id":"row-1"}`
//! (`claims` is an object; `claims_json` a string holding one).

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

use agentd::rpc::proto::{self, issuance_service_client::IssuanceServiceClient};

use super::client::{Daemon, ok};
use super::output::print;

/// One line of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    connection_id: String,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    #[serde(default)]
    claims_json: Option<String>,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    schema_id: String,
    #[serde(default)]
    validity_period_secs: u64,
    #[serde(default)]
    automatic_issuance: bool,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    issuer_did: String,
    #[serde(default)]
    expires_in_secs: u64,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    correlation_id: String,
    #[serde(default)]
    reference_id: String,
    #[serde(default)]
    collection_id: String,
    #[serde(default)]
    refuse_duplicate: bool,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    credential_expires_at: u64,
}

impl Line {
    fn into_request(self, n: usize) -> anyhow::Result<proto::CreateOfferRequest> {
        let claims_json = match (self.claims, self.claims_json) {
            (Some(c), None) => Value::Object(c).to_string(),
            (None, Some(j)) => j,
            (None, None) => "{}".into(),
            (Some(_), Some(_)) => bail!("line {n}: give claims or claims_json, not both"),
        };
        Ok(proto::CreateOfferRequest {
            wallet_id: String::new(),
            connection_id: self.connection_id,
            claims_json,
            types: self.types,
            schema_id: self.schema_id,
            validity_period_secs: self.validity_period_secs,
            automatic_issuance: self.automatic_issuance,
            idempotency_key: self.idempotency_key,
            issuer_did: self.issuer_did,
            expires_in_secs: self.expires_in_secs,
            comment: self.comment,
            format: self.format,
            template_id: self.template_id,
            correlation_id: self.correlation_id,
            reference_id: self.reference_id,
            collection_id: self.collection_id,
            refuse_duplicate: self.refuse_duplicate,
            draft: self.draft,
            credential_expires_at: self.credential_expires_at,
        })
    }
}

pub async fn offers(d: &Daemon, file: &str, idempotency_key: String) -> anyhow::Result<()> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let mut offers = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let parsed: Line = serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        offers.push(parsed.into_request(i + 1)?);
    }
    let mut c = IssuanceServiceClient::new(d.svc());
    let r = ok(c
        .create_offers(proto::CreateOffersRequest {
            wallet_id: d.wallet.clone(),
            offers,
            idempotency_key,
        })
        .await)?;
    let mut outcomes: Vec<(u32, String)> = r
        .created
        .iter()
        .map(|o| {
            let id = o.record.as_ref().map_or("", |r| r.id.as_str());
            (o.index, format!("created {id}"))
        })
        .chain(
            r.failed
                .iter()
                .map(|o| (o.index, format!("failed {}: {}", o.error_code, o.error))),
        )
        .collect();
    outcomes.sort();
    if d.out.json {
        let item = |o: &proto::OfferOutcome| {
            serde_json::json!({
                "index": o.index,
                "record_id": o.record.as_ref().map(|r| r.id.clone()),
                "error_code": o.error_code,
                "error": o.error,
            })
        };
        print(serde_json::json!({
            "created": r.created.iter().map(item).collect::<Vec<_>>(),
            "failed": r.failed.iter().map(item).collect::<Vec<_>>(),
        }))?;
    } else {
        for (index, outcome) in outcomes {
            print(format_args!("{index:>4}  {outcome}"))?;
        }
    }
    eprintln!("{} created, {} failed", r.created.len(), r.failed.len());
    Ok(())
}

/// Makes a claim link for `offer`; prints its record and URL, and writes
/// its QR codes where asked.
pub async fn claim_link(
    d: &Daemon,
    offer: proto::CreateOfferRequest,
    label: String,
    qr: Option<std::path::PathBuf>,
    svg: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let mut c = IssuanceServiceClient::new(d.svc());
    let link = ok(c
        .create_claim_link(proto::CreateClaimLinkRequest {
            wallet_id: d.wallet.clone(),
            offer: Some(offer),
            label,
        })
        .await)?;
    for (path, bytes) in [(qr, link.qr_png.as_slice()), (svg, link.qr_svg.as_bytes())] {
        if let Some(path) = path {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let record = link.record.map(|r| r.id).unwrap_or_default();
    print(if d.out.json {
        serde_json::json!({ "record_id": record, "invitation_url": link.invitation_url })
            .to_string()
    } else {
        format!(
            "record:         {record}\ninvitation_url: {}",
            link.invitation_url
        )
    })
    .map_err(Into::into)
}
