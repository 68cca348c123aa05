//! The creation-defer-length extension: a length given with a later `PATCH`.

use super::*;

#[tokio::test]
async fn a_deferred_length_is_given_with_a_later_patch() {
    let server = Server::start().await;
    let input = pseudo_random(30_000, 5);
    let (location, _) = server
        .tus_created(
            server
                .tus(Method::POST, FILES)
                .header(th::UPLOAD_DEFER_LENGTH, 1),
        )
        .await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred, "HEAD has Upload-Defer-Length: 1");
    assert_eq!(head.length, None, "and no Upload-Length");
    assert_eq!(head.offset, 0);

    server
        .tus_patched(
            server.tus_patch(&location, 0, input[..10_000].to_vec()),
            10_000,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred);
    assert_eq!((head.offset, head.length, head.key), (10_000, None, None));

    // A length below what is already there: 400, nothing changes.
    let resp = server
        .tus_patch(&location, 10_000, Vec::new())
        .header(th::UPLOAD_LENGTH, 5_000)
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 400).await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred, "a refused Upload-Length is not recorded");
    assert_eq!(head.offset, 10_000);
    // With bytes that would run past it too: refused either way (400 or 413).
    let resp = server
        .tus_patch(&location, 10_000, input[10_000..20_000].to_vec())
        .header(th::UPLOAD_LENGTH, 5_000)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 413, "got {status}");
    tus::assert_tus_problem(resp, status).await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred, "a refused Upload-Length is not recorded");
    assert_eq!(head.offset, 10_000);

    server
        .tus_patched(
            server
                .tus_patch(&location, 10_000, input[10_000..].to_vec())
                .header(th::UPLOAD_LENGTH, input.len()),
            input.len() as u64,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert!(!head.deferred, "the length is known now");
    assert_eq!(head.length, Some(input.len() as u64));
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}
