//! What a caller may see and change.
//!
//! Business data (devices, series, warnings) is visible to: the system administrator, the
//! monitoring center, reviewers and re-supervision — everything; department handlers and leaders
//! — the objects their department (and its sub-departments) is responsible for, plus any regions
//! set on their account. The security and audit administrators see no business data (separated
//! powers). Something outside the caller's scope answers 404, exactly like something that does
//! not exist, so scope leaks nothing.

use std::collections::HashSet;

use offsite_store::auth::Role;
use offsite_store::AccessScope;

use crate::auth::{forbidden, Principal};
use crate::error::ApiError;
use crate::AppState;

/// Roles that read business data across all departments.
const SEE_ALL: [Role; 4] = [Role::SystemAdmin, Role::Monitor, Role::Reviewer, Role::Resupervision];
/// Roles whose view is their department's.
const DEPARTMENT: [Role; 2] = [Role::Handler, Role::Leader];

/// Who may change rules, registers and other configuration.
pub const CONFIGURE: [Role; 1] = [Role::SystemAdmin];
/// Who may act on warnings (resolve, silence, maintenance windows).
pub const OPERATE: [Role; 2] = [Role::Monitor, Role::SystemAdmin];

/// The caller's view of business data; 403 for roles that have none.
pub async fn scope(state: &AppState, p: &Principal) -> Result<AccessScope, ApiError> {
    if p.has_any(&SEE_ALL) {
        return Ok(AccessScope::all());
    }
    if !p.has_any(&DEPARTMENT) {
        return Err(forbidden());
    }
    let user = &p.session.user;
    let mut s = match user.department_id {
        Some(d) => state.store.department_access_scope(d, false).await?,
        None => AccessScope::none(),
    };
    s.region_codes.extend(user.region_codes.iter().cloned());
    Ok(s)
}

/// The device keys the caller may see; `None` means every device.
pub async fn visible_devices(state: &AppState, p: &Principal) -> Result<Option<HashSet<i32>>, ApiError> {
    let s = scope(state, p).await?;
    if s.all {
        return Ok(None);
    }
    Ok(Some(state.store.device_keys_visible(&s).await?.into_iter().collect()))
}
