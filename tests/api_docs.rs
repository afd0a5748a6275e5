//! The API documentation is served by every instance and needs nothing from the network.

mod common;

use common::{Instance, config, header, http};
use serde_json::Value;

#[tokio::test]
async fn the_document_and_its_page_are_served_offline() {
    let a = Instance::start(config(None, "docs")).await;
    let (status, headers, body) = http(a.addr, "GET", "/api-docs.json", None, None).await;
    assert_eq!(status, 200);
    let content_type = header(&headers, "content-type");
    assert!(
        content_type.is_some_and(|v| v.starts_with("application/json")),
        "{content_type:?}"
    );
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/auth/signup",
        "/api/home/verify-otp",
        "/api/v1/auth/refresh",
        "/api/v1/rooms",
        "/ws",
        "/api/v1/rooms/{room_id}/members/{user_id}",
        "/api/v1/me/rooms",
        "/api/v1/me/activity",
        "/api/v1/workspaces/{id}/rooms",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }

    for (path, method) in [
        ("/api/v1/rooms/{room_id}", "patch"),
        ("/api/v1/rooms/{room_id}", "delete"),
        ("/api/v1/workspaces/{id}", "delete"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }

    let (status, headers, page) = http(a.addr, "GET", "/api-docs", None, None).await;
    assert_eq!(status, 200);
    let content_type = header(&headers, "content-type");
    assert!(
        content_type.is_some_and(|v| v.starts_with("text/html")),
        "{content_type:?}"
    );
    assert!(page.contains("api-docs.json"));
    assert!(!page.contains("https://") && !page.contains("http://"));
    a.stop().await;
}
