//! `X-HTTP-Method-Override` for clients behind proxies that drop `PATCH`.

use super::*;

#[tokio::test]
async fn a_post_with_method_override_patch_appends() {
    let server = Server::start().await;
    let input = pseudo_random(20_000, 9);
    let location = server.tus_create(input.len() as u64, "").await;
    let over = |offset: usize, body: &[u8]| {
        server
            .tus(Method::POST, &location)
            .header(th::METHOD_OVERRIDE, "PATCH")
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header(th::UPLOAD_OFFSET, offset)
            .body(body.to_vec())
    };
    server.tus_patched(over(0, &input[..7_000]), 7_000).await;
    assert_eq!(server.tus_head(&location).await.offset, 7_000);
    // The override is a PATCH in every respect: a wrong offset is a 409.
    let (headers, _) =
        tus::assert_tus_problem(over(0, &input[..7_000]).send().await.unwrap(), 409).await;
    assert_eq!(header_u64(&headers, th::UPLOAD_OFFSET), 7_000);
    server
        .tus_patched(over(7_000, &input[7_000..]), input.len() as u64)
        .await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}
