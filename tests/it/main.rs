//! The integration tests, as one test binary: each module was once a binary of its own,
//! and every one of them linked the whole crate. `support` holds what they share: the
//! in-process server over a fresh database, and the real binary as a child process.

#[macro_use]
mod support;

mod account;
mod admin;
mod auth;
mod browser;
mod clients;
mod contract;
mod customer;
mod deploy;
mod distribution;
mod durability;
mod hostile;
mod http;
mod import;
mod limits;
mod mail;
mod merge;
mod openapi;
mod peer;
mod process;
mod process_admin;
mod process_import;
mod profile;
mod races;
mod ratelimit;
mod scale;
mod search;
mod seed_examples;
mod webhooks;
