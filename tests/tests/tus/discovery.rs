//! Discovery: `OPTIONS` advertises tus 1.0, its extensions and limits.

use super::*;

#[tokio::test]
async fn options_advertises_tus_1_0_its_extensions_and_limits() {
    let server = Server::start_with(&["--max-input-size", "64MiB"]).await;
    let location = server.tus_create(10, "").await;
    // A client asks before it knows the version: no Tus-Resumable needed.
    for path in [FILES, location.as_str()] {
        let resp = server.tus_bare(Method::OPTIONS, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "OPTIONS {path}");
        let headers = resp.headers();
        tus::assert_resumable(headers, "OPTIONS");
        assert!(
            tokens(headers, th::TUS_VERSION).contains(tus::VERSION),
            "Tus-Version {:?}",
            headers.get(th::TUS_VERSION)
        );
        let want: BTreeSet<String> = [
            "creation",
            "creation-with-upload",
            "creation-defer-length",
            "expiration",
            "checksum",
            "termination",
            "concatenation",
        ]
        .map(String::from)
        .into();
        assert_eq!(tokens(headers, th::TUS_EXTENSION), want, "Tus-Extension");
        assert_eq!(
            header_u64(headers, th::TUS_MAX_SIZE),
            64 * MIB,
            "Tus-Max-Size is the configured max input size"
        );
        let algorithms = tokens(headers, th::TUS_CHECKSUM_ALGORITHM);
        for alg in ["sha1", "md5", "sha256"] {
            assert!(
                algorithms.contains(alg),
                "Tus-Checksum-Algorithm {algorithms:?} lacks {alg}"
            );
        }
    }
}

#[tokio::test]
async fn options_needs_no_api_key_but_uploads_do() {
    let server = Server::start_with_config("api_keys = [\"secret-key\"]\n", &[]).await;
    let resp = server
        .tus_bare(Method::OPTIONS, FILES)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "OPTIONS without a key"
    );
    assert!(tokens(resp.headers(), th::TUS_VERSION).contains(tus::VERSION));

    let anonymous = server.tus_create_request(10, "").send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "POST without a key"
    );
    let (location, _) = server
        .tus_created(server.tus_create_request(10, "").bearer_auth("secret-key"))
        .await;
    let head = server
        .tus(Method::HEAD, &location)
        .bearer_auth("secret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}
