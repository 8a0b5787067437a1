use tonic::{Request, Response, Status};

use super::proto::{self, template_service_server::TemplateService};
use super::{query, status};
use crate::Core;
use crate::search::{Field, Kind};
use crate::store::Template;
use crate::templates::{self, NewTemplate};

pub struct Templates(pub Core);

fn template_to_proto(core: &Core, t: Template) -> proto::Template {
    proto::Template {
        schema_url: templates::schema_url(&core.endpoint, &t.id),
        schema_json: t.schema.to_string(),
        id: t.id,
        wallet_id: t.wallet_id,
        name: t.name,
        types: t.types,
        contexts: t.contexts,
        default_validity_secs: t.default_validity_secs,
        max_validity_secs: t.max_validity_secs,
        issuer_did: t.issuer_did.unwrap_or_default(),
        created_at_ms: t.created_at_ms,
        created_by: t.created_by,
        archived_at_ms: t.archived_at_ms.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl TemplateService for Templates {
    async fn create_template(
        &self,
        request: Request<proto::CreateTemplateRequest>,
    ) -> Result<Response<proto::Template>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let new = NewTemplate {
            name: r.name,
            types: r.types,
            contexts: r.contexts,
            schema_json: r.schema_json,
            default_validity_secs: r.default_validity_secs,
            max_validity_secs: r.max_validity_secs,
            issuer_did: Some(r.issuer_did),
        };
        let t = templates::create(&self.0, &wallet, new).map_err(status)?;
        Ok(Response::new(template_to_proto(&self.0, t)))
    }

    async fn get_template(
        &self,
        request: Request<proto::GetTemplateRequest>,
    ) -> Result<Response<proto::Template>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let t = self
            .0
            .store
            .template(&wallet, &r.template_id)
            .map_err(status)?;
        Ok(Response::new(template_to_proto(&self.0, t)))
    }

    async fn list_templates(
        &self,
        request: Request<proto::ListTemplatesRequest>,
    ) -> Result<Response<proto::ListTemplatesResponse>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let kind = Kind::Templates;
        let mut q = query::query(kind, r.query.as_ref(), vec![])?;
        // A query that asks about status (`status=archived`) says which it
        // wants; otherwise archived ones only on request.
        if !r.include_archived && !q.mentions(&Field::Status) {
            q = q.and(query::eq(kind, "status", "active")?);
        }
        let found = query::page::<Template>(&self.0.store, &wallet, q, &r.page).await?;
        Ok(Response::new(proto::ListTemplatesResponse {
            total: query::total(&found),
            templates: found
                .items
                .into_iter()
                .map(|t| template_to_proto(&self.0, t))
                .collect(),
            next_page_token: found.next_token,
        }))
    }

    async fn archive_template(
        &self,
        request: Request<proto::GetTemplateRequest>,
    ) -> Result<Response<proto::Template>, Status> {
        let r = request.into_inner();
        let wallet = super::auth::wallet(&self.0, &r.wallet_id)?;
        let t = templates::archive(&self.0, &wallet, &r.template_id).map_err(status)?;
        Ok(Response::new(template_to_proto(&self.0, t)))
    }
}
