//! The checksum extension: `Upload-Checksum` of every algorithm, mismatches, bad headers.

use super::*;

#[tokio::test]
async fn matching_checksums_of_every_algorithm_are_accepted() {
    let server = Server::start().await;
    let input = [FOX, HELLO, HELLO].concat();
    // sha256 on a creation with upload, md5 and sha1 on PATCHes.
    let (location, headers) = server
        .tus_created(
            server
                .tus_create_request(input.len() as u64, "")
                .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
                .header(th::UPLOAD_CHECKSUM, checksum("sha256", FOX_SHA256))
                .body(FOX.to_vec()),
        )
        .await;
    let mut offset = FOX.len() as u64;
    assert_eq!(header_u64(&headers, th::UPLOAD_OFFSET), offset);
    for sum in [checksum("md5", HELLO_MD5), checksum("sha1", HELLO_SHA1)] {
        server
            .tus_patched(
                server
                    .tus_patch(&location, offset, HELLO.to_vec())
                    .header(th::UPLOAD_CHECKSUM, sum),
                offset + HELLO.len() as u64,
            )
            .await;
        offset += HELLO.len() as u64;
    }
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}

#[tokio::test]
async fn checksum_mismatch_discards_the_body_and_a_retry_succeeds() {
    let server = Server::start().await;
    let input = [HELLO, FOX].concat();
    let location = server.tus_create(input.len() as u64, "").await;

    // The sha1 of another body: 460, and the offset does not move.
    let resp = server
        .tus_patch(&location, 0, HELLO.to_vec())
        .header(th::UPLOAD_CHECKSUM, checksum("sha1", FOX_SHA1))
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 460).await;
    assert_eq!(server.tus_head(&location).await.offset, 0);
    server
        .tus_patched(
            server
                .tus_patch(&location, 0, HELLO.to_vec())
                .header(th::UPLOAD_CHECKSUM, checksum("sha1", HELLO_SHA1)),
            5,
        )
        .await;

    // Again with md5, after some bytes are in.
    let resp = server
        .tus_patch(&location, 5, FOX.to_vec())
        .header(th::UPLOAD_CHECKSUM, checksum("md5", HELLO_MD5))
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 460).await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.offset, 5, "a mismatched body is not committed");
    assert_eq!(head.key, None);
    server
        .tus_patched(
            server
                .tus_patch(&location, 5, FOX.to_vec())
                .header(th::UPLOAD_CHECKSUM, checksum("md5", FOX_MD5)),
            input.len() as u64,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}

#[tokio::test]
async fn bad_checksum_headers_are_refused() {
    let server = Server::start().await;
    let location = server.tus_create(5, "").await;
    let sha1 = STANDARD.encode(hex::decode(HELLO_SHA1).unwrap());
    for bad in [
        format!("crc32 {sha1}"),
        format!("sha512 {sha1}"),
        "sha1".to_owned(),
        "sha1 !!not-base64!!".to_owned(),
    ] {
        let resp = server
            .tus_patch(&location, 0, HELLO.to_vec())
            .header(th::UPLOAD_CHECKSUM, &bad)
            .send()
            .await
            .unwrap();
        tus::assert_tus_problem(resp, 400).await;
    }
    assert_eq!(
        server.tus_head(&location).await.offset,
        0,
        "nothing was appended"
    );
}
