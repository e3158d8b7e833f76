//! The replicated log (file journal and Kafka), snapshots on disk, recovery and divergence
//! checks. Not built yet: see issue 4 and ARCHITECTURE.md.
