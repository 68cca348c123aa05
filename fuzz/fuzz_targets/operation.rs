//! Fuzz target `operation`: the properties of [`upcache_protocol::props::operation`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upcache_protocol::props::operation(data));
