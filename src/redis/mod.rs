//! Redis for horizontal scaling (issue 6, in progress): so far only the
//! RESP2 codec. The client, envelope and cluster logic come next.

pub mod resp;
