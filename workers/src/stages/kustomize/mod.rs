//! kustomize (seed 5.2–5.6): the base template and the user input in, one image version's
//! Deployment, Service and ConfigMap out, stored in k8or-kustomize and written as a real
//! kustomization folder in the app-image bucket.

pub mod files;
pub mod names;
pub mod render;

use async_trait::async_trait;
use k8or::model::{BaseKustomizeItem, EventType, ImageMetadata, KustomizeItem};
use k8or::pid::known;
use k8or::store::tables::to_json;
use k8or::store::{Condition, Key, SmallObject, TableError, TablesExt};
use k8or::time::Created;
use k8or::{Context, JobEnvelope, JobRecord, Pid, Stage};
use serde_json::{json, Value};
use tracing::{info, instrument};

use self::render::{render, RenderError, RenderInput};
use super::common::{self, record_event};
use super::persist::user_input_timestamp;
use crate::runner::{Outcome, StageError, StageHandler};

pub struct Kustomize;

/// Reads the job's user input (seed 5.4) as persist-metadata stored it.
async fn user_input(ctx: &Context, job: &JobRecord) -> Result<ImageMetadata, StageError> {
    let table = &ctx.settings.tables.user_input_manifest;
    let key = Key::with_sort(job.image_uid.clone(), user_input_timestamp(job));
    let item = ctx.stores.tables.get(table, &key).await?.ok_or_else(|| {
        StageError::Retryable(format!(
            "no user input for {} at {} in {table} (persist-metadata has not stored it)",
            key.partition,
            key.sort.as_deref().unwrap_or_default()
        ))
    })?;
    let metadata = item.get("imageMetadata").cloned().unwrap_or(Value::Null);
    let mut metadata: ImageMetadata = serde_json::from_value(metadata)
        .map_err(|e| StageError::retry(format!("user input item in {table} is unreadable"), e))?;
    metadata.image_uid = Some(job.image_uid.clone());
    Ok(metadata)
}

/// Writes the kustomization folder of `item`'s version, then reads the version's row again:
/// while it names another job (a newer one replaced it meanwhile), writes that job's files
/// too. Two jobs of one version may run at once, and whichever wrote its files last would
/// otherwise leave them beside the other's row; the row only moves to newer jobs, so this
/// ends, with the folder holding what the row holds. `rendered`: `item`'s files, where the
/// caller has them already (else they are rendered from its resources). Returns the item
/// the folder holds.
pub async fn write_folder(
    ctx: &Context,
    mut item: KustomizeItem,
    mut rendered: Option<Vec<(String, String)>>,
) -> Result<KustomizeItem, StageError> {
    let bucket = &ctx.settings.buckets.app_image;
    let table = &ctx.settings.tables.k8or_kustomize;
    let key = Key::with_sort(item.image_uid.clone(), item.image_version.clone());
    loop {
        let files = match rendered.take() {
            Some(files) => files,
            None => files::files(&item.helm_chart).map_err(|e| {
                StageError::retry(format!("kustomization item of job {}", item.job_id), e)
            })?,
        };
        // One set: a folder store syncs the folder once for all the files.
        let objects = files
            .into_iter()
            .map(|(name, text)| SmallObject {
                key: format!("{}/{name}", item.kustomization_prefix),
                body: text.into(),
                content_type: Some("application/yaml".to_owned()),
            })
            .collect();
        ctx.stores.blobs.put_many(bucket, objects).await?;
        match ctx
            .stores
            .tables
            .get_as::<KustomizeItem>(table, &key)
            .await?
        {
            Some(now) if now.job_id != item.job_id => {
                info!(newer = %now.job_id, "the row changed while the files were written; writing its files");
                item = now;
            }
            _ => return Ok(item),
        }
    }
}

#[async_trait]
impl StageHandler for Kustomize {
    fn stage(&self) -> Stage {
        Stage::Kustomize
    }

    fn error_type(&self) -> &'static str {
        "kustomize-rejected"
    }

    #[instrument(skip_all, fields(job.id = %job.job_id, image.uid = %job.image_uid, pid = known::KUSTOMIZE_REQUEST))]
    async fn handle(
        &self,
        job: &JobRecord,
        _env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError> {
        let settings = &ctx.settings;
        record_event(
            ctx,
            job,
            EventType::KustomizationInitiated,
            known::KUSTOMIZATION_INITIATED_EVENT,
            None,
        )
        .await?;

        // 5.3: the base template. Missing is an operator's problem: retried, then
        // dead-lettered, and re-driven once the template is there.
        let template_name = &settings.kustomize.base_template;
        let template: BaseKustomizeItem = ctx
            .stores
            .tables
            .get_as(
                &settings.tables.base_kustomize,
                &Key::partition(template_name.clone()),
            )
            .await?
            .ok_or_else(|| {
                StageError::Retryable(format!(
                    "base template {template_name:?} is not in {} (bootstrap loads the default)",
                    settings.tables.base_kustomize
                ))
            })?;

        // 5.4: the user input.
        let metadata = user_input(ctx, job).await?;

        let rendered = render(
            &template.helm_chart_data,
            &RenderInput {
                metadata: &metadata,
                registry_prefix: &settings.kustomize.registry_prefix,
                replicas: settings.kustomize.replicas,
            },
        )
        .map_err(|e| match e {
            RenderError::Input(problems) => StageError::Permanent(problems),
            RenderError::Template(t) => {
                StageError::Retryable(format!("base template {template_name:?} is unusable: {t}"))
            }
        })?;
        let version = metadata.image_version.clone();
        let prefix = files::prefix(&job.image_uid, &version);
        let files = files::files(&rendered.resources())
            .map_err(|e| StageError::retry("rendering YAML", e))?;

        // 5.5: the manifests, keyed by (imageUID, imageVersion); a newer job's stay.
        let item = KustomizeItem {
            image_uid: job.image_uid.clone(),
            image_version: version.clone(),
            helm_chart: rendered.resources(),
            job_id: job.job_id,
            kustomization_prefix: prefix.clone(),
            created: Created::at(job.created_at),
        };
        let job_id = job.job_id.to_string();
        let condition = Condition::Or(vec![
            Condition::NotExists,
            Condition::eq("jobId", job_id.as_str()),
            Condition::lt("jobId", job_id.as_str()),
        ]);
        let written = match ctx
            .stores
            .tables
            .put_json(
                &settings.tables.k8or_kustomize,
                to_json(&item)?,
                Some(condition),
            )
            .await
        {
            Ok(()) => true,
            Err(TableError::ConditionFailed | TableError::AlreadyExists) => false,
            Err(e) => return Err(e.into()),
        };
        let bucket = &settings.buckets.app_image;
        // Written or not, the folder is made to hold what the row holds: a run of an
        // older job may have put its files there after the newer job wrote its own.
        let row = if written {
            None
        } else {
            info!(%prefix, "a newer job's kustomization holds this version");
            let key = Key::with_sort(job.image_uid.clone(), version.clone());
            ctx.stores
                .tables
                .get_as(&settings.tables.k8or_kustomize, &key)
                .await?
        };
        match row {
            Some(row) => write_folder(ctx, row, None).await?,
            None => write_folder(ctx, item, Some(files.clone())).await?,
        };
        let file_keys: Vec<String> = files.iter().map(|(n, _)| format!("{prefix}/{n}")).collect();
        record_event(
            ctx,
            job,
            EventType::KustomizationSaved,
            known::KUSTOMIZATION_SAVED_EVENT,
            Some(json!({
                "table": settings.tables.k8or_kustomize,
                "bucket": bucket,
                "prefix": prefix,
                "files": file_keys,
                "written": written,
            })),
        )
        .await?;

        let pids = [
            known::KUSTOMIZATION_INITIATED_EVENT,
            known::BASE_KUSTOMIZE_READ,
            known::USER_INPUT_READ,
            known::KUSTOMIZE_SAVE,
            known::KUSTOMIZATION_SAVED_EVENT,
        ]
        .map(Pid::constant)
        .to_vec();
        let yaml: serde_json::Map<String, Value> = files
            .into_iter()
            .map(|(name, text)| (name, Value::String(text)))
            .collect();
        Ok(Outcome::new(pids).with_output(
            common::KUSTOMIZATION,
            json!({
                "bucket": bucket,
                "prefix": prefix,
                "files": file_keys,
                "current": written,
                "manifests": rendered.resources(),
                "yaml": yaml,
            }),
        ))
    }
}
