//! Glue/Spectrum DDL and the PostgreSQL stand-in.
