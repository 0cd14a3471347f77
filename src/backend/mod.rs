//! Where counters live: the backends that implement the engine's counter seam
//! ([`crate::engine::CounterBackend`]) and the usage seam ([`crate::usage`]'s `UsageBackend`).
//! Leaves: the layer's builder picks one (in this process by default, Redis with the `redis`
//! feature); nothing but the builder names them.

mod local;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(test)]
mod tests;

pub(crate) use local::InProcess;
