//! gRPC glue: decodes requests, reads the caller ([`Caller`]: optional, anonymous calls are
//! allowed on the dev gateway), validates the track-change fields, calls [`AppStore`] and
//! encodes responses. No domain logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_common::{Fingerprint, ServiceResult, validate_request_id};
use meshwork_proto::pb::appstore::v1 as pb;
use pb::app_store_server::AppStore as AppStoreApi;
use tonic::{Request, Response, Status};

use crate::model;
use crate::rollout::{self, PPM};
use crate::search::SearchIndex;
use crate::service::{AppStore, TrackChange};
use crate::validate as v;

/// The tonic service.
#[derive(Clone)]
pub struct AppStoreService {
    inner: Arc<AppStore>,
    index: Arc<SearchIndex>,
}

impl AppStoreService {
    /// Wraps `inner` and the replica's search `index` for tonic.
    pub fn new(inner: Arc<AppStore>, index: Arc<SearchIndex>) -> Self {
        AppStoreService { inner, index }
    }

    /// Checks the common fields of a track change and applies it.
    async fn change<M: prost::Message>(
        &self,
        caller: Option<Caller>,
        req: &M,
        request_id: &str,
        package: &str,
        change: impl FnOnce() -> ServiceResult<TrackChange>,
    ) -> Result<pb::Track, Status> {
        validate_request_id(request_id)?;
        v::package_name("package_name", package)?;
        let change = change()?;
        Ok(self.inner.change_track(request_id, Fingerprint::of(req), package, &change, caller.as_ref()).await?)
    }
}

/// Returns a validated track name (required).
fn track(field: &str, t: &str) -> ServiceResult<String> {
    Ok(v::track(field, t, false)?.to_string())
}

#[tonic::async_trait]
impl AppStoreApi for AppStoreService {
    async fn create_developer(
        &self,
        request: Request<pb::CreateDeveloperRequest>,
    ) -> Result<Response<pb::CreateDeveloperResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let developer = self.inner.create_developer(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::CreateDeveloperResponse { developer: Some(developer) }))
    }

    async fn create_app(
        &self,
        request: Request<pb::CreateAppRequest>,
    ) -> Result<Response<pb::CreateAppResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let app = self.inner.create_app(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::CreateAppResponse { app: Some(app) }))
    }

    async fn upload_release(
        &self,
        request: Request<pb::UploadReleaseRequest>,
    ) -> Result<Response<pb::UploadReleaseResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let release = self.inner.upload_release(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::UploadReleaseResponse { release: Some(release) }))
    }

    async fn set_track_release(
        &self,
        request: Request<pb::SetTrackReleaseRequest>,
    ) -> Result<Response<pb::SetTrackReleaseResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let t = self
            .change(caller, r, &r.request_id, &r.package_name, || {
                let track = track("track", &r.track)?;
                v::version_code("version_code", r.version_code)?;
                let ppm = v::fraction("user_fraction", r.user_fraction)?;
                Ok(TrackChange::Set { track, version_code: r.version_code, ppm })
            })
            .await?;
        Ok(Response::new(pb::SetTrackReleaseResponse { track: Some(t) }))
    }

    async fn update_rollout(
        &self,
        request: Request<pb::UpdateRolloutRequest>,
    ) -> Result<Response<pb::UpdateRolloutResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let t = self
            .change(caller, r, &r.request_id, &r.package_name, || {
                let track = track("track", &r.track)?;
                let ppm = v::fraction("user_fraction", r.user_fraction)?;
                Ok(TrackChange::Update { track, ppm })
            })
            .await?;
        Ok(Response::new(pb::UpdateRolloutResponse { track: Some(t) }))
    }

    async fn halt_rollout(
        &self,
        request: Request<pb::HaltRolloutRequest>,
    ) -> Result<Response<pb::HaltRolloutResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let t = self
            .change(caller, r, &r.request_id, &r.package_name, || {
                Ok(TrackChange::Halt { track: track("track", &r.track)? })
            })
            .await?;
        Ok(Response::new(pb::HaltRolloutResponse { track: Some(t) }))
    }

    async fn resume_rollout(
        &self,
        request: Request<pb::ResumeRolloutRequest>,
    ) -> Result<Response<pb::ResumeRolloutResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let t = self
            .change(caller, r, &r.request_id, &r.package_name, || {
                Ok(TrackChange::Resume { track: track("track", &r.track)? })
            })
            .await?;
        Ok(Response::new(pb::ResumeRolloutResponse { track: Some(t) }))
    }

    async fn complete_rollout(
        &self,
        request: Request<pb::CompleteRolloutRequest>,
    ) -> Result<Response<pb::CompleteRolloutResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let t = self
            .change(caller, r, &r.request_id, &r.package_name, || {
                Ok(TrackChange::Complete { track: track("track", &r.track)? })
            })
            .await?;
        Ok(Response::new(pb::CompleteRolloutResponse { track: Some(t) }))
    }

    async fn promote_release(
        &self,
        request: Request<pb::PromoteReleaseRequest>,
    ) -> Result<Response<pb::PromoteReleaseResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let r = request.get_ref();
        let t = self
            .change(caller, r, &r.request_id, &r.package_name, || {
                let from = track("from_track", &r.from_track)?;
                let to = track("to_track", &r.to_track)?;
                if from == to {
                    return Err(meshwork_common::ServiceError::invalid("to_track", "must differ from from_track"));
                }
                let ppm = if r.user_fraction == 0.0 { PPM } else { v::fraction("user_fraction", r.user_fraction)? };
                Ok(TrackChange::Promote { from, to, ppm })
            })
            .await?;
        Ok(Response::new(pb::PromoteReleaseResponse { track: Some(t) }))
    }

    async fn check_update(
        &self,
        request: Request<pb::CheckUpdateRequest>,
    ) -> Result<Response<pb::CheckUpdateResponse>, Status> {
        Ok(Response::new(self.inner.check_update(request.get_ref()).await?))
    }

    async fn record_install(
        &self,
        request: Request<pb::RecordInstallRequest>,
    ) -> Result<Response<pb::RecordInstallResponse>, Status> {
        let counted = self.inner.record_install(request.get_ref()).await?;
        Ok(Response::new(pb::RecordInstallResponse { counted }))
    }

    async fn record_uninstall(
        &self,
        request: Request<pb::RecordUninstallRequest>,
    ) -> Result<Response<pb::RecordUninstallResponse>, Status> {
        let counted = self.inner.record_uninstall(request.get_ref()).await?;
        Ok(Response::new(pb::RecordUninstallResponse { counted }))
    }

    async fn get_app_details(
        &self,
        request: Request<pb::GetAppDetailsRequest>,
    ) -> Result<Response<pb::GetAppDetailsResponse>, Status> {
        let d = self.inner.app_details(&request.get_ref().package_name).await?;
        let latest = d.app.tracks.get("production").and_then(|t| t.newest()).map(model::track_release_pb);
        Ok(Response::new(pb::GetAppDetailsResponse {
            latest_production_release: latest,
            total_installs: d.total_installs as i64,
            active_installs: d.total_installs.saturating_sub(d.removed) as i64,
            // The ratings service addresses skus ([A-Z0-9-]{3,40}) with verified purchases from
            // orders; a package name is neither, so the summary stays empty (see the README).
            rating: None,
            tracks: d.app.tracks_pb(),
            app: Some(d.app.to_pb()),
        }))
    }

    async fn search_apps(
        &self,
        request: Request<pb::SearchAppsRequest>,
    ) -> Result<Response<pb::SearchAppsResponse>, Status> {
        let params = AppStore::search_params(request.get_ref())?;
        let (hits, found) = self.inner.search(&self.index, params).await?;
        Ok(Response::new(pb::SearchAppsResponse {
            hits: hits.into_iter().map(|(app, score)| pb::SearchHit { app: Some(app.to_pb()), score }).collect(),
            total: found.total as i64,
            next_page_token: found.next_page_token,
        }))
    }

    async fn top_charts(
        &self,
        request: Request<pb::TopChartsRequest>,
    ) -> Result<Response<pb::TopChartsResponse>, Status> {
        let page = self.inner.top_charts(request.get_ref()).await?;
        Ok(Response::new(pb::TopChartsResponse {
            entries: page
                .entries
                .into_iter()
                .map(|(rank, app, s, score)| pb::ChartEntry {
                    rank: rank as i32,
                    app: Some(app.to_pb()),
                    total_installs: s.total as i64,
                    installs_last_7_days: s.recent as i64,
                    installs_prior_7_days: s.prior as i64,
                    trending_score: score,
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

// The track names of the API are the rollout module's.
const _: [&str; 4] = rollout::TRACKS;
