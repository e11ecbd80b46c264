//! Cloudflare values through the facade: reading, streaming both ways, metadata, key encoding,
//! and the limits refused before any request.

use bytes::Bytes;
use edgekv::Body;
use edgekv::cloudflare::{PutOptions, limits};
use edgekv::error::{Error, InvalidInput};
use futures_util::StreamExt as _;
use httpmock::MockServer;
use serde_json::json;

use crate::support::envelope::{cf_key_not_found, cf_ok};
use crate::support::{CF_BEARER, CF_NAMESPACE, cf_path, cloudflare_client, exact};

const THREE_MIB: usize = 3 * 1024 * 1024;

/// A deterministic value whose every chunk differs, so a reordered or short copy shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251 % 256) as u8)
        .collect()
}

#[tokio::test]
async fn get_returns_the_value_and_its_expiration() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/My-Key")).header("authorization", CF_BEARER);
            then.status(200)
                .header("expiration", "1578435000")
                .body("Some Value");
        })
        .await;
    let value = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .get("My-Key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expiration(), Some(1_578_435_000));
    assert_eq!(value.bytes().await.unwrap(), "Some Value");
}

#[tokio::test]
async fn get_of_a_missing_key_is_none() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/gone"));
            then.status(404).json_body(cf_key_not_found());
        })
        .await;
    let value = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .get("gone")
        .await
        .unwrap();
    assert!(value.is_none());
    mock.assert_async().await;
}

#[tokio::test]
async fn a_3_mib_value_streams_up_and_down_intact() {
    let server = MockServer::start_async().await;
    let value = pattern(THREE_MIB);
    let expected = value.clone();
    let upload = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/values/big"))
                .header("content-type", "application/octet-stream")
                .is_true(move |req| req.body_ref() == expected.as_slice());
            then.status(200).json_body(cf_ok(json!(null)));
        })
        .await;
    let download = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/big"));
            then.status(200).body(value.clone());
        })
        .await;

    // Sent from a stream of 64 KiB chunks produced as they are read, never held whole.
    let source = Bytes::from(pattern(THREE_MIB));
    let chunks = futures_util::stream::iter((0..THREE_MIB).step_by(64 * 1024)).map(move |start| {
        Ok::<_, std::io::Error>(source.slice(start..(start + 64 * 1024).min(THREE_MIB)))
    });
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    namespace
        .put(
            "big",
            Body::from_stream(chunks, Some(THREE_MIB as u64)),
            PutOptions::new(),
        )
        .await
        .unwrap();
    upload.assert_async().await;

    let mut stream = namespace.get("big").await.unwrap().unwrap().into_body();
    let (mut received, mut pieces) = (Vec::new(), 0);
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
        pieces += 1;
    }
    download.assert_async().await;
    assert!(received == value, "the downloaded bytes differ");
    assert!(pieces > 1, "the value arrived in one piece: not streamed");
}

#[tokio::test]
async fn put_from_a_reader_with_expirations() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "PUT",
                &cf_path("/values/file?expiration=1578435000&expiration_ttl=300"),
            )
            .body("from a reader");
            then.status(200).json_body(cf_ok(json!({})));
        })
        .await;
    let reader = std::io::Cursor::new(b"from a reader".to_vec());
    let options = PutOptions::new()
        .expiration(1_578_435_000)
        .expiration_ttl(300);
    cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .put("file", Body::from_reader(reader, None), options)
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn put_with_metadata_sends_a_multipart_form_with_both_parts() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/values/with-meta?expiration_ttl=120"))
                .header("authorization", CF_BEARER)
                .header_missing("api-version")
                .is_true(|req| {
                    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") else { return false };
                    let body = req.body_string();
                    let value_part = "Content-Disposition: form-data; name=\"value\"\r\n\r\nstreamed value\r\n";
                    let metadata_part = "Content-Disposition: form-data; name=\"metadata\"\r\n\r\n{\"colour\":\"green\",\"n\":1}\r\n";
                    body.starts_with(&format!("--{boundary}\r\n"))
                        && body.contains(value_part)
                        && body.contains(metadata_part)
                        && body.ends_with(&format!("--{boundary}--\r\n"))
                });
            then.status(200).json_body(cf_ok(json!(null)));
        })
        .await;
    let chunks = futures_util::stream::iter(
        ["streamed ", "value"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))),
    );
    let options = PutOptions::new()
        .expiration_ttl(120)
        .metadata(json!({"colour": "green", "n": 1}));
    cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .put("with-meta", Body::from_stream(chunks, None), options)
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn metadata_reads_as_json_or_a_type_and_a_missing_key_is_none() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Meta {
        colour: String,
    }
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/metadata/k"));
            then.status(200)
                .json_body(cf_ok(json!({"colour": "green"})));
        })
        .await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/metadata/gone"));
            then.status(404).json_body(cf_key_not_found());
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    assert_eq!(
        namespace.metadata("k").await.unwrap(),
        Some(json!({"colour": "green"}))
    );
    assert_eq!(
        namespace.metadata_as::<Meta>("k").await.unwrap(),
        Some(Meta {
            colour: "green".into()
        })
    );
    assert_eq!(namespace.metadata("gone").await.unwrap(), None);
    let wrong = namespace.metadata_as::<u32>("k").await.unwrap_err();
    assert!(matches!(wrong, Error::BadResponse(_)), "{wrong:?}");
}

#[tokio::test]
async fn delete_removes_the_key() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &cf_path("/values/k"));
            then.status(200).json_body(cf_ok(json!({})));
        })
        .await;
    cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .delete("k")
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn every_key_reaches_its_own_path() {
    let server = MockServer::start_async().await;
    let cases = [
        ("a/b", "a%2Fb"),
        ("a?b", "a%3Fb"),
        ("a#b", "a%23b"),
        ("100%", "100%25"),
        ("ключ", "%D0%BA%D0%BB%D1%8E%D1%87"),
        ("a b", "a%20b"),
    ];
    let mut mocks = Vec::new();
    for (key, encoded) in cases {
        mocks.push(
            server
                .mock_async(|when, then| {
                    exact(when, "GET", &cf_path(&format!("/values/{encoded}")));
                    then.status(200).body(key);
                })
                .await,
        );
    }
    let namespace = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .with_url_encoding(true);
    for (key, _) in cases {
        let value = namespace
            .get(key)
            .await
            .unwrap()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(value, key, "key {key:?} reached another path");
    }
    for mock in mocks {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn a_namespace_that_stores_encoded_keys_literally_refuses_keys_needing_encoding() {
    let server = MockServer::start_async().await;
    let lookup = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(200).json_body(cf_ok(
                json!({"id": CF_NAMESPACE, "title": "legacy", "supports_url_encoding": false}),
            ));
        })
        .await;
    let plain = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/plain-key"));
            then.status(200).body("v");
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    // A key that needs no encoding needs no lookup.
    namespace.get("plain-key").await.unwrap();
    assert_eq!(lookup.calls_async().await, 0);
    for (key, position) in [("a/b", 1), ("ab c", 2)] {
        let error = namespace.get(key).await.unwrap_err();
        assert_eq!(error.to_string(), "refused before sending");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(
            cause,
            format!(
                "the key needs URL encoding (at byte {position}), and this namespace stores encoded keys literally"
            )
        );
    }
    // Looked up once, then remembered.
    assert_eq!(lookup.calls_async().await, 1);
    plain.assert_async().await;
}

#[tokio::test]
async fn every_local_limit_is_refused_without_a_request() {
    let server = MockServer::start_async().await;
    let any = server
        .mock_async(|when, then| {
            when.any_request();
            then.status(200).json_body(cf_ok(json!(null)));
        })
        .await;
    let namespace = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .with_url_encoding(true);
    let long_key = "k".repeat(limits::MAX_KEY_BYTES + 1);
    let refused = |result: Result<_, Error>| match result {
        Err(Error::InvalidInput(input)) => input,
        other => panic!("expected a local refusal, got {other:?}"),
    };

    for key in ["", ".", ".."] {
        let input = refused(namespace.get(key).await.map(drop));
        assert_eq!(input, InvalidInput::UnaddressableKey { len: key.len() });
        refused(namespace.put(key, "v", PutOptions::new()).await.map(drop));
        refused(namespace.delete(key).await.map(drop));
        refused(namespace.metadata(key).await.map(drop));
    }
    assert_eq!(
        refused(namespace.get(&long_key).await.map(drop)),
        InvalidInput::KeyTooLong { len: 513, max: 512 }
    );
    assert_eq!(
        refused(
            namespace
                .put("k", "v", PutOptions::new().expiration_ttl(59))
                .await
                .map(drop)
        ),
        InvalidInput::ExpirationTtlTooShort { ttl: 59, min: 60 }
    );
    let big_metadata = json!({"pad": "x".repeat(limits::MAX_METADATA_BYTES)});
    assert!(matches!(
        refused(
            namespace
                .put("k", "v", PutOptions::new().metadata(big_metadata))
                .await
                .map(drop)
        ),
        InvalidInput::MetadataTooLarge { max: 1024, .. }
    ));
    let too_big = limits::MAX_VALUE_BYTES + 1;
    let never_read = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
    assert_eq!(
        refused(
            namespace
                .put(
                    "k",
                    Body::from_stream(never_read, Some(too_big)),
                    PutOptions::new()
                )
                .await
                .map(drop)
        ),
        InvalidInput::ValueTooLarge {
            len: too_big,
            max: limits::MAX_VALUE_BYTES
        }
    );
    let mut listing = namespace.keys(edgekv::cloudflare::ListKeys::new().limit(5));
    assert!(matches!(
        listing.next().await,
        Some(Err(Error::InvalidInput(InvalidInput::OutOfRange {
            what: "limit",
            ..
        })))
    ));
    assert!(listing.next().await.is_none());

    any.assert_calls_async(0).await;
}
