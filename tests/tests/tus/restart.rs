//! Resuming across a restart: the durable offset survives `kill -9`.

use super::*;

#[tokio::test]
async fn an_upload_resumes_from_its_durable_offset_after_kill9() {
    let mut server = Server::start_with(&["--default-block-size", "1MiB"]).await;
    let input = pseudo_random((4 * MIB + 123) as usize, 8);
    let location = server.tus_create(input.len() as u64, "").await;
    let acked = (5 * MIB / 2) as usize;
    server
        .tus_patched(
            server.tus_patch(&location, 0, input[..acked].to_vec()),
            acked as u64,
        )
        .await;

    // Then a PATCH cut in the middle of its body, and kill -9.
    let sent = acked + 300 * 1024;
    let mut conn = RawConn::connect(server.addr()).await;
    let headers = [
        (th::TUS_RESUMABLE, tus::VERSION.to_owned()),
        ("content-type", OFFSET_OCTET_STREAM.to_owned()),
        (th::UPLOAD_OFFSET, acked.to_string()),
        ("content-length", (input.len() - acked).to_string()),
    ];
    conn.send_head("PATCH", &location, &headers).await;
    conn.send(&input[acked..sent]).await;
    drop(conn);
    server.kill9();
    server.restart().await;

    let head = server.tus_head(&location).await;
    assert!(
        head.offset >= acked as u64 && head.offset <= sent as u64,
        "after kill -9 the offset is {}: at least the {acked} acknowledged bytes, \
         at most the {sent} sent",
        head.offset
    );
    assert_eq!(head.length, Some(input.len() as u64));
    assert_eq!(head.key, None);
    server
        .tus_patched(
            server.tus_patch(
                &location,
                head.offset,
                input[head.offset as usize..].to_vec(),
            ),
            input.len() as u64,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}
