//! # inlet-lake: the lake's layout, schema and store, for those who read it
//!
//! The lake is hourly-partitioned Parquet under `{lake}/events/source={source}/dt={YYYY-MM-DD}/hour={HH}/`
//! on S3 or a local directory, with one watermark per gateway instance under
//! `{lake}/_inlet/watermarks/`. This crate holds what every reader and writer of it shares: where
//! files go ([`layout`]), the columns ([`schema`]) and their Parquet encoding ([`parquet_file`]),
//! the store ([`store`], S3 or a local directory through `object_store`), reading files back
//! ([`read`]), the external-table DDL for Spectrum and Athena ([`ddl`]), and the retry policy
//! ([`Backoff`]). The writer that fills the lake from the WAL is `inlet-lake-writer`; this crate
//! does not link the WAL.

pub mod backoff;
pub mod ddl;
mod field_index;
pub mod layout;
pub mod parquet_file;
pub mod read;
pub mod schema;
pub mod store;

pub use backoff::Backoff;
pub use layout::{Hour, Partition, Watermark};
pub use parquet_file::Codec;
pub use store::{LakeLocation, LakeStore, S3Settings};
