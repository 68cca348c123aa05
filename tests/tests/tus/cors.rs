//! CORS for browser tus clients: preflights and exposed headers.

use super::*;

const APP: &str = "https://app.example";

fn assert_lists(headers: &HeaderMap, name: &str, want: &[&str]) {
    let listed = tokens(headers, name);
    for w in want {
        assert!(
            listed.contains(*w) || listed.contains("*"),
            "{name} {listed:?} lacks {w}"
        );
    }
}

#[tokio::test]
async fn cors_lets_an_allowed_origin_use_tus() {
    let server = Server::start_with(&["--cors-origin", APP]).await;
    let location = server.tus_create(10, "").await;
    let asked = [
        "tus-resumable",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-checksum",
        "upload-defer-length",
        "upload-concat",
        "content-type",
        "x-http-method-override",
    ];
    // Preflights carry no Tus-Resumable (browsers send none).
    for (path, method) in [(FILES, "POST"), (location.as_str(), "PATCH")] {
        let resp = server.preflight(path, APP, method, &asked.join(", ")).await;
        assert_eq!(
            resp.status(),
            StatusCode::NO_CONTENT,
            "preflight of {method} {path}"
        );
        let headers = resp.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), APP);
        let methods: BTreeSet<String> = tokens(headers, "access-control-allow-methods")
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        // GET, HEAD and POST are CORS-safelisted; these two are not.
        for m in ["PATCH", "DELETE"] {
            assert!(
                methods.contains(m),
                "Access-Control-Allow-Methods {methods:?} lacks {m}"
            );
        }
        assert_lists(headers, "access-control-allow-headers", &asked);
    }

    let resp = server
        .tus_create_request(10, "")
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let headers = resp.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), APP);
    let exposed = [
        "location",
        "upload-offset",
        "upload-length",
        "upload-key",
        "upload-expires",
        "upload-metadata",
        "tus-resumable",
        "tus-version",
    ];
    assert_lists(headers, "access-control-expose-headers", &exposed);

    let resp = server
        .tus(Method::HEAD, &location)
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), APP);
    assert_lists(resp.headers(), "access-control-expose-headers", &exposed);

    // Errors too: a browser must be able to read them.
    let resp = server
        .tus_bare(Method::PATCH, &location)
        .header("origin", APP)
        .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
        .header(th::UPLOAD_OFFSET, 0)
        .body(HELLO.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), APP);
    tus::assert_tus_problem(resp, 412).await;

    // And /v1.
    let job = Job::identity(HELLO.to_vec());
    let resp = server
        .client()
        .get(server.url(&entry_path(&job.key)))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), APP);
}

#[tokio::test]
async fn cors_ignores_other_origins() {
    let server = Server::start_with(&["--cors-origin", APP]).await;
    let evil = "https://evil.example";
    let resp = server
        .preflight(FILES, evil, "POST", "tus-resumable, upload-length")
        .await;
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "preflight from {evil}: {:?}",
        resp.headers()
    );
    let resp = server
        .tus_create_request(10, "")
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "POST from {evil}: {:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn cors_origins_from_the_config_file_and_the_wildcard() {
    let server = Server::start_with_config("cors_origins = [\"*\"]\n", &[]).await;
    let origin = "https://anywhere.example";
    let resp = server
        .preflight(FILES, origin, "POST", "tus-resumable, upload-length")
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let allowed = header(resp.headers(), "access-control-allow-origin");
    assert!(
        allowed == "*" || allowed == origin,
        "Access-Control-Allow-Origin {allowed:?}"
    );
    let resp = server
        .tus_create_request(10, "")
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let allowed = header(resp.headers(), "access-control-allow-origin");
    assert!(
        allowed == "*" || allowed == origin,
        "Access-Control-Allow-Origin {allowed:?}"
    );
    assert_lists(
        resp.headers(),
        "access-control-expose-headers",
        &["location", "upload-offset"],
    );
}
