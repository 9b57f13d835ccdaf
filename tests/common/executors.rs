//! The executors every fidelity test runs on: the CPU, and the test GPU.
//!
//! The test GPU is `NEURONPATH_TEST_GPU=N` of `neuronpath devices` when set, else
//! the first hardware GPU, else the first software device (Mesa's lavapipe, which
//! `scripts/test` installs). With none the GPU tests fail: they never skip. A
//! software device computes ~40x slower than the CPU executor, so tests run it on
//! the first few of their reference images ([`Executor::images`]).

use neuronpath::model::exec::gpu::{self, Device};
use neuronpath::model::Vit;
use std::sync::OnceLock;

/// Where a test runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    Cpu,
    Gpu,
}

pub const BOTH: [Executor; 2] = [Executor::Cpu, Executor::Gpu];

/// The test GPU, opened once per test binary.
pub fn device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| {
        let found = gpu::devices();
        let usable = |d: &&gpu::DeviceInfo| d.unusable.is_none();
        let index = match std::env::var("NEURONPATH_TEST_GPU") {
            Ok(n) => n.parse().expect("NEURONPATH_TEST_GPU: a device number"),
            Err(_) => found
                .iter()
                .filter(usable)
                .find(|d| !d.is_software())
                .or_else(|| found.iter().find(usable))
                .map(|d| d.index)
                .unwrap_or_else(|| {
                    panic!("no usable GPU for the GPU tests (found {found:?}): on Debian, `apt-get install mesa-vulkan-drivers` gives lavapipe, a software device; scripts/test installs it")
                }),
        };
        Device::open(index).expect("opening the test GPU")
    })
}

impl Executor {
    /// `vit` placed on this executor.
    pub fn place(self, mut vit: Vit) -> Vit {
        if self == Executor::Gpu {
            vit.use_gpu(device())
                .expect("placing the model on the test GPU");
        }
        vit
    }

    /// How many of a test's `n` reference images run here: all of them, or on a
    /// software device the first `software` (its arithmetic is that of a hardware
    /// GPU, its speed not).
    pub fn images(self, n: usize, software: usize) -> usize {
        match self == Executor::Gpu && device().is_software() {
            true => n.min(software),
            false => n,
        }
    }
}
