//! The concatenation extension: partial and final uploads.

use super::*;

/// Creates a partial upload of `bytes` and sends them; returns its `Location`.
async fn partial(server: &Server, bytes: &[u8]) -> String {
    let (location, _) = server
        .tus_created(
            server
                .tus_create_request(bytes.len() as u64, "")
                .header(th::UPLOAD_CONCAT, Concat::Partial.encode()),
        )
        .await;
    server
        .tus_patched(
            server.tus_patch(&location, 0, bytes.to_vec()),
            bytes.len() as u64,
        )
        .await;
    location
}

/// Creates the final upload of `parts` (as written in `Upload-Concat`).
async fn final_upload(server: &Server, parts: &[String], metadata: &str) -> String {
    let mut req = server
        .tus(Method::POST, FILES)
        .header(th::UPLOAD_CONCAT, Concat::Final(parts.to_vec()).encode());
    if !metadata.is_empty() {
        req = req.header(th::UPLOAD_METADATA, metadata);
    }
    server.tus_created(req).await.0
}

/// Waits until the final upload at `location` is assembled (its `HEAD` has
/// `Upload-Offset` only from then on) and bound; returns its `HEAD`.
async fn assembled(server: &Server, location: &str, length: u64) -> tus::TusHead {
    eventually(
        "the final upload to be assembled",
        Duration::from_secs(15),
        || async {
            let resp = server.tus_head_response(location).await;
            assert_eq!(resp.status(), StatusCode::OK, "HEAD {location}");
            let headers = resp.headers();
            assert_eq!(
                header_u64(headers, th::UPLOAD_LENGTH),
                length,
                "Upload-Length of a final upload is the sum of its partials'"
            );
            if let Some(offset) = headers.get(th::UPLOAD_OFFSET) {
                let offset: u64 = offset.to_str().unwrap().parse().unwrap();
                assert!(offset <= length, "Upload-Offset {offset} of {length}");
            }
            let done = headers
                .get(th::UPLOAD_OFFSET)
                .is_some_and(|o| o == &length.to_string())
                && headers.get(th::UPLOAD_KEY).is_some();
            if done {
                Some(server.tus_head(location).await)
            } else {
                None
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_final_upload_concatenates_its_partials() {
    let server = Server::start().await;
    let a = pseudo_random(100_000, 6);
    let b = pseudo_random(70_001, 7);
    let (pa, pb) = (partial(&server, &a).await, partial(&server, &b).await);
    let head = server.tus_head(&pa).await;
    assert_eq!(
        Concat::parse(header(&head.headers, th::UPLOAD_CONCAT)),
        Ok(Concat::Partial)
    );
    assert_eq!(head.offset, a.len() as u64);
    assert_eq!(head.key, None, "a partial upload is not an input");

    let fin = final_upload(&server, &[pa.clone(), pb.clone()], "").await;
    let ab = [a.as_slice(), b.as_slice()].concat();
    let head = assembled(&server, &fin, ab.len() as u64).await;
    assert!(
        matches!(
            Concat::parse(header(&head.headers, th::UPLOAD_CONCAT)),
            Ok(Concat::Final(_))
        ),
        "Upload-Concat of the final upload: {:?}",
        head.headers.get(th::UPLOAD_CONCAT)
    );
    assert_eq!(head.key, Some(key_of(&ab, json!({"op": "identity"}))));
    assert!(server.tus_result(&fin).await.1 == ab, "the result is a‖b");

    // A final upload takes no bytes of its own: any PATCH is forbidden.
    for (offset, body) in [
        (ab.len() as u64, Vec::new()),
        (ab.len() as u64, HELLO.to_vec()),
        (0, HELLO.to_vec()),
    ] {
        let resp = server
            .tus_patch(&fin, offset, body.clone())
            .send()
            .await
            .unwrap();
        let what = format!(
            "PATCH of {} bytes at {offset} to a final upload",
            body.len()
        );
        assert_eq!(resp.status().as_u16(), 403, "{what}");
        tus::assert_tus_problem(resp, 403).await;
    }
    assert_eq!(server.tus_head(&fin).await.offset, ab.len() as u64);
}

#[tokio::test]
async fn a_final_upload_takes_absolute_urls_and_an_operation() {
    let server = Server::start().await;
    let img = png(32, 24);
    let (head_part, tail_part) = img.split_at(img.len() / 3);
    let pa = partial(&server, head_part).await;
    let pb = partial(&server, tail_part).await;
    let op = grayscale_png();
    let fin = final_upload(
        &server,
        &[server.url(&pa), server.url(&pb)],
        &tus::op_metadata(&op),
    )
    .await;
    let head = assembled(&server, &fin, img.len() as u64).await;
    assert_eq!(head.key, Some(key_of(&img, op)));
    let (headers, result) = server.tus_result(&fin).await;
    assert_eq!(header(&headers, "content-type"), "image/png");
    let out = image::load_from_memory_with_format(&result, ImageFormat::Png).unwrap();
    assert_eq!(out.dimensions(), (32, 24));
}

#[tokio::test]
async fn a_final_upload_of_unknown_partials_is_refused() {
    let server = Server::start().await;
    let known = partial(&server, HELLO).await;
    let resp = server
        .tus(Method::POST, FILES)
        .header(
            th::UPLOAD_CONCAT,
            Concat::Final(vec![known, unknown_location()]).encode(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "final of an unknown partial: {status}"
    );
    assert!(resp.headers().get(LOCATION).is_none());
    tus::assert_tus_problem(resp, status).await;
}
