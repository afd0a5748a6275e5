//! The history routes of `PROTOCOL.md` §5: the op log, a board at any seq, named versions,
//! diffs, restore (one sequenced op, through the engine like any other), exports; and the
//! import that `POST /api/v1/rooms` does when it is given a board.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get, routing::post};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::AppState;
use super::authz;
use super::error::ApiError;
use super::schemas;
use crate::domain::access::Role;
use crate::domain::board::Intent;
use crate::domain::element::{Element, ElementLimits, Kind, MAX_BATCH};
use crate::domain::history::{self, Board, Version};
use crate::domain::record::EventFrames;
use crate::domain::svg;
use crate::domain::{ConnKey, Identity, RoomId, UserId};
use crate::engine::{Op, OpOutcome, Past, now_ms};

/// Most events one page of `GET .../ops` holds, and how many when not said.
const OPS_MAX: usize = 5_000;
const OPS_DEFAULT: usize = 500;
/// Most elements one import may create (an SVG's or an `export.json`'s).
const IMPORT_MAX_ELEMENTS: usize = svg::ImportLimits::MAX_ELEMENTS;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/rooms/{room_id}/ops", get(ops))
        .route("/api/v1/rooms/{room_id}/state", get(state))
        .route(
            "/api/v1/rooms/{room_id}/versions",
            get(versions).post(create_version),
        )
        .route("/api/v1/rooms/{room_id}/diff", get(diff))
        .route("/api/v1/rooms/{room_id}/restore", post(restore))
        .route("/api/v1/rooms/{room_id}/export.json", get(export_json))
        .route("/api/v1/rooms/{room_id}/export.svg", get(export_svg))
}

/// The same answer as for a room the caller may not see (§6).
fn not_found() -> ApiError {
    authz::not_found()
}

/// An answer about the past that is not a board: 404, 410 with the oldest seq, or 400.
fn refused<T>(past: Past<T>) -> Response {
    match past {
        Past::Trimmed { oldest } => (
            StatusCode::GONE,
            Json(json!({
                "success": false,
                "code": "HISTORY_TRIMMED",
                "message": format!("history before seq {oldest} is no longer kept"),
                "oldestSeq": oldest,
            })),
        )
            .into_response(),
        Past::Ahead { seq } => ApiError::bad_request(format!(
            "the room is at seq {seq}; ask for one at most that"
        ))
        .into_response(),
        Past::Missing | Past::Found(_) => not_found().into_response(),
    }
}

/// A seq, or the id of one of the room's versions.
async fn resolve(app: &AppState, room: &RoomId, point: &str) -> Result<u64, Response> {
    if let Ok(seq) = point.parse::<u64>() {
        return Ok(seq);
    }
    let versions = app
        .history
        .versions(room)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(|| not_found().into_response())?;
    versions
        .iter()
        .find(|v| v.version_id == point)
        .map(|v| v.seq)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "VERSION_NOT_FOUND",
                format!("{point} is neither a seq nor a version of this room"),
            )
            .into_response()
        })
}

/// The board right after `at` (a seq or version id; absent: now), or the response saying why not.
async fn board_at(app: &AppState, room: &RoomId, at: Option<&str>) -> Result<Board, Response> {
    let at = match at.filter(|a| !a.is_empty()) {
        Some(point) => Some(resolve(app, room, point).await?),
        None => None,
    };
    match app.history.board_at(room, at).await {
        Ok(Past::Found(board)) => Ok(board),
        Ok(other) => Err(refused(other)),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

fn raw_json(text: String) -> Response {
    ([(CONTENT_TYPE, "application/json")], text).into_response()
}

#[derive(Deserialize)]
struct OpsQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

/// The sequenced events after `since`, as `REPLAY` carries them.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/ops", tag = "history",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("since" = Option<u64>, Query, description = "the last seq already seen (default 0)"),
        ("limit" = Option<usize>, Query, description = "most events (default 500, max 5,000)"),
    ),
    responses(
        (status = 200, description = "{epoch, events, nextSince}", body = Object),
        (status = 400, description = "since is after the room's seq", body = schemas::ErrorBody),
        (status = 404, description = "no such room", body = schemas::ErrorBody),
        (status = 410, description = "HISTORY_TRIMMED, with oldestSeq", body = schemas::ErrorBody),
    )
)]
async fn ops(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<OpsQuery>,
) -> Result<Response, ApiError> {
    let room = authz::require(&app, &headers, &room, Role::Viewer)
        .await?
        .room;
    let limit = q.limit.unwrap_or(OPS_DEFAULT).clamp(1, OPS_MAX);
    let page = match app.history.ops(&room, q.since.unwrap_or(0), limit).await? {
        Past::Found(page) => page,
        other => return Ok(refused(other)),
    };
    let frames: Vec<String> = page
        .records
        .iter()
        .filter_map(|r| EventFrames::build(&room, r).map(|f| f.frame))
        .collect();
    let events: Vec<&RawValue> = frames
        .iter()
        .filter_map(|f| serde_json::from_str(f).ok())
        .collect();
    let body = json!({"epoch": page.epoch, "events": events, "nextSince": page.next_since});
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct AtQuery {
    at: Option<String>,
}

/// The board as it was right after `at`.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/state", tag = "history",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("at" = Option<String>, Query, description = "a seq or a versionId (default: now)"),
    ),
    responses(
        (status = 200, description = "{roomId, seq, strokes, elements}", body = Object),
        (status = 404, description = "no such room or version", body = schemas::ErrorBody),
        (status = 410, description = "HISTORY_TRIMMED, with oldestSeq", body = schemas::ErrorBody),
    )
)]
async fn state(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Response, ApiError> {
    let room = authz::require(&app, &headers, &room, Role::Viewer)
        .await?
        .room;
    Ok(match board_at(&app, &room, q.at.as_deref()).await {
        Ok(board) => raw_json(history::state_json(&room, &board)),
        Err(response) => response,
    })
}

/// The room's named versions, newest first.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/versions", tag = "history",
    security(("bearer" = [])),
    params(("room_id" = String, Path, description = "the room id")),
    responses(
        (status = 200, description = "{versions: [{versionId, name, seq, createdBy, createdAt}]}", body = Object),
        (status = 404, description = "no such room", body = schemas::ErrorBody),
    )
)]
async fn versions(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    let room = authz::require(&app, &headers, &room, Role::Viewer)
        .await?
        .room;
    let list = app.history.versions(&room).await?.ok_or_else(not_found)?;
    Ok(Json(json!({"versions": list})).into_response())
}

#[derive(Deserialize)]
struct NewVersion {
    name: String,
}

/// Names the room's current seq.
#[utoipa::path(
    post, path = "/api/v1/rooms/{room_id}/versions", tag = "history",
    security(("bearer" = [])),
    params(("room_id" = String, Path, description = "the room id")),
    request_body(content = Object, description = "{name}"),
    responses(
        (status = 201, description = "{versionId, name, seq, createdBy, createdAt}", body = Object),
        (status = 400, description = "no name, or a bad one", body = schemas::ErrorBody),
        (status = 404, description = "no such room", body = schemas::ErrorBody),
    )
)]
async fn create_version(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let allowed = authz::require(&app, &headers, &room, Role::Editor).await?;
    let room = allowed.room;
    let asked: NewVersion = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("send {\"name\": \"...\"}"))?;
    let name = history::version_name(&asked.name).map_err(ApiError::bad_request)?;
    let draft = Version {
        version_id: uuid::Uuid::new_v4().simple().to_string(),
        name,
        seq: 0, // the engine names the seq it finds
        created_by: allowed.caller.user,
        created_at: now_ms(),
    };
    let version = app
        .history
        .add_version(&room, draft)
        .await?
        .ok_or_else(not_found)?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

#[derive(Deserialize)]
struct DiffQuery {
    from: String,
    to: Option<String>,
}

/// What changed between two seqs or versions, element by element.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/diff", tag = "history",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("from" = String, Query, description = "a seq or a versionId"),
        ("to" = Option<String>, Query, description = "a seq or a versionId (default: now)"),
    ),
    responses(
        (status = 200, description = "{from, to, added, removed, changed: [{id, before, after}]}", body = Object),
        (status = 404, description = "no such room or version", body = schemas::ErrorBody),
        (status = 410, description = "HISTORY_TRIMMED, with oldestSeq", body = schemas::ErrorBody),
    )
)]
async fn diff(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Response, ApiError> {
    let room = authz::require(&app, &headers, &room, Role::Viewer)
        .await?
        .room;
    let from = match board_at(&app, &room, Some(&q.from)).await {
        Ok(board) => board,
        Err(response) => return Ok(response),
    };
    let to = match board_at(&app, &room, q.to.as_deref()).await {
        Ok(board) => board,
        Err(response) => return Ok(response),
    };
    let d = history::diff(&from, &to);
    let raw = |e: &Element| history::stored(e);
    let list = |l: &[Element]| format!("[{}]", l.iter().map(raw).collect::<Vec<_>>().join(","));
    let changed: Vec<String> = d
        .changed
        .iter()
        .map(|c| {
            format!(
                r#"{{"id":{},"before":{},"after":{}}}"#,
                json!(c.after.id),
                raw(&c.before),
                raw(&c.after)
            )
        })
        .collect();
    Ok(raw_json(format!(
        r#"{{"from":{},"to":{},"added":{},"removed":{},"changed":[{}]}}"#,
        from.seq,
        to.seq,
        list(&d.added),
        list(&d.removed),
        changed.join(",")
    )))
}

#[derive(Deserialize)]
struct RestoreBody {
    at: Value,
}

/// One sequenced op that makes the board what it was at `at`; history is kept.
#[utoipa::path(
    post, path = "/api/v1/rooms/{room_id}/restore", tag = "history",
    security(("bearer" = [])),
    params(("room_id" = String, Path, description = "the room id")),
    request_body(content = Object, description = "{at: seq or versionId}"),
    responses(
        (status = 200, description = "{seq}: the restore's own seq", body = Object),
        (status = 400, description = "no at, or after the room's seq", body = schemas::ErrorBody),
        (status = 404, description = "no such room or version", body = schemas::ErrorBody),
        (status = 410, description = "HISTORY_TRIMMED, with oldestSeq", body = schemas::ErrorBody),
    )
)]
async fn restore(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let allowed = authz::require(&app, &headers, &room, Role::Editor).await?;
    let room = allowed.room;
    let asked: RestoreBody = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("send {\"at\": <seq or versionId>}"))?;
    let point = match &asked.at {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(ApiError::bad_request("at must be a seq or a versionId")),
    };
    let target = match board_at(&app, &room, Some(&point)).await {
        Ok(board) => board,
        Err(response) => return Ok(response),
    };
    let who = Identity::new(allowed.caller.user, allowed.caller.name);
    let intent = Intent::Restore {
        at: target.seq,
        target: target.elements().into_iter().cloned().collect(),
    };
    match apply(&app, &room, &who, intent).await? {
        OpOutcome::Applied { seq, .. } | OpOutcome::Duplicate { seq, .. } => {
            Ok(Json(json!({"seq": seq})).into_response())
        }
        OpOutcome::RoomMissing => Err(not_found()),
        OpOutcome::Refused(refusal) => Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal.code(),
            refusal.message(),
        )),
    }
}

/// An op made over HTTP: its origin is no socket, so every socket of the room gets its event.
async fn apply(
    app: &AppState,
    room: &RoomId,
    who: &Identity,
    intent: Intent,
) -> Result<OpOutcome, ApiError> {
    // Named like no socket (those are numbered), so no socket takes the event for its own.
    let conn = ConnKey::from_raw(&format!("{}/http", app.instance_id));
    let op = Op {
        who,
        conn: &conn,
        op_id: None,
        intent,
    };
    Ok(app.engine.apply(room, op).await?)
}

/// The board (at `at`) as an `export.json` document.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/export.json", tag = "history",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("at" = Option<String>, Query, description = "a seq or a versionId (default: now)"),
    ),
    responses(
        (status = 200, description = "{format: \"drawbridge-board\", version: 1, roomId, seq, strokes, elements}", body = Object),
        (status = 404, description = "no such room or version", body = schemas::ErrorBody),
        (status = 410, description = "HISTORY_TRIMMED, with oldestSeq", body = schemas::ErrorBody),
    )
)]
async fn export_json(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Response, ApiError> {
    let room = authz::require(&app, &headers, &room, Role::Viewer)
        .await?
        .room;
    let board = match board_at(&app, &room, q.at.as_deref()).await {
        Ok(board) => board,
        Err(response) => return Ok(response),
    };
    let mut response = raw_json(history::export_json(&room, &board));
    attachment(&mut response, &format!("board-{room}-{}.json", board.seq));
    Ok(response)
}

/// The board (at `at`) as a standalone SVG document.
#[utoipa::path(
    get, path = "/api/v1/rooms/{room_id}/export.svg", tag = "history",
    security(("bearer" = [])),
    params(
        ("room_id" = String, Path, description = "the room id"),
        ("at" = Option<String>, Query, description = "a seq or a versionId (default: now)"),
    ),
    responses(
        (status = 200, description = "an SVG 1.1 document", content_type = "image/svg+xml", body = String),
        (status = 404, description = "no such room or version", body = schemas::ErrorBody),
        (status = 410, description = "HISTORY_TRIMMED, with oldestSeq", body = schemas::ErrorBody),
    )
)]
async fn export_svg(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Response, ApiError> {
    let room = authz::require(&app, &headers, &room, Role::Viewer)
        .await?
        .room;
    let board = match board_at(&app, &room, q.at.as_deref()).await {
        Ok(board) => board,
        Err(response) => return Ok(response),
    };
    let elements: Vec<Element> = board.elements().into_iter().cloned().collect();
    let svg = svg::export(&elements);
    let mut response = ([(CONTENT_TYPE, "image/svg+xml")], svg).into_response();
    attachment(&mut response, &format!("board-{room}-{}.svg", board.seq));
    Ok(response)
}

fn attachment(response: &mut Response, name: &str) {
    if let Ok(value) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
}

/// What an import brought.
pub struct Imported {
    pub imported: usize,
    pub skipped: usize,
}

/// The elements a creation body asks for: `None` when the body asks for none (a plain
/// creation, as Canvas sends it), else the checked elements and how many were skipped. Read
/// before the room exists, so strokes name it only in [`import_into`].
pub async fn import_body(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    user: &UserId,
) -> Result<Option<(Vec<Element>, usize)>, ApiError> {
    let placeholder = RoomId::new("import");
    let kind = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let max = app.config.max_import_bytes;
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "IMPORT_TOO_LARGE",
            format!("an import may be at most {max} bytes"),
        )
    })?;
    let limits = ElementLimits {
        max_points: app.config.max_points,
    };
    match kind.as_str() {
        "image/svg+xml" => {
            // Parsing a large drawing takes a while: off the runtime's workers.
            let user = user.clone();
            let imported = tokio::task::spawn_blocking(move || {
                svg::import(&bytes, &user, &placeholder, svg::ImportLimits::new(limits))
            })
            .await
            .map_err(|e| ApiError::from(crate::engine::EngineError::Internal(e.to_string())))?
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_IMPORT", e.to_string()))?;
            Ok(Some((imported.elements, imported.skipped)))
        }
        "application/json" if !bytes.iter().all(u8::is_ascii_whitespace) => {
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_IMPORT",
                    format!("not JSON: {e}"),
                )
            })?;
            if doc.get("format").is_none() {
                return Ok(None);
            }
            let values = history::export_json_elements(&doc).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_IMPORT",
                    "not an export.json document (format must be \"drawbridge-board\")",
                )
            })?;
            if values.len() > IMPORT_MAX_ELEMENTS {
                return Err(too_many(values.len()));
            }
            let mut skipped = 0;
            let elements = values
                .iter()
                .filter_map(|v| {
                    let e = Element::from_client(v, user, &placeholder, limits).ok();
                    skipped += usize::from(e.is_none());
                    e
                })
                .collect();
            Ok(Some((elements, skipped)))
        }
        _ => Ok(None),
    }
}

fn too_many(n: usize) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "BAD_IMPORT",
        format!("{n} elements; an import may hold at most {IMPORT_MAX_ELEMENTS}"),
    )
}

/// Puts imported elements on a new board as ops of its creator, `MAX_BATCH` at a time: every
/// element that could stand (unique id; an edge between imported nodes) is added.
pub async fn import_into(
    app: &AppState,
    room: &RoomId,
    who: &Identity,
    elements: Vec<Element>,
    skipped: usize,
) -> Result<Imported, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut nodes = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(elements.len());
    let mut skipped = skipped;
    for e in elements {
        if !seen.insert(e.id.clone()) {
            skipped += 1;
            continue;
        }
        if e.kind == Kind::Node {
            nodes.insert(e.id.clone());
        }
        kept.push(e);
    }
    // Edges after every node, so each batch finds the nodes its edges name.
    let (edges, mut list): (Vec<Element>, Vec<Element>) =
        kept.into_iter().partition(|e| e.kind == Kind::Edge);
    for edge in edges {
        let ends = [&edge.from, &edge.to];
        if ends
            .iter()
            .all(|end| end.as_ref().is_some_and(|id| nodes.contains(id)))
        {
            list.push(edge);
        } else {
            skipped += 1;
        }
    }
    for e in &mut list {
        if e.room_id.is_some() {
            e.room_id = Some(room.clone());
        }
    }
    let imported = list.len();
    for batch in list.chunks(MAX_BATCH) {
        match apply(app, room, who, Intent::Add(batch.to_vec())).await? {
            OpOutcome::Applied { .. } | OpOutcome::Duplicate { .. } => {}
            OpOutcome::RoomMissing => return Err(not_found()),
            OpOutcome::Refused(refusal) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_IMPORT",
                    refusal.message(),
                ));
            }
        }
    }
    Ok(Imported { imported, skipped })
}
