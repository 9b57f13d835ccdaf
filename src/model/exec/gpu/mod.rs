//! The GPU executor: every step of a pass as a WGSL compute kernel run by wgpu,
//! on Vulkan (Linux and Windows: NVIDIA, AMD, Intel, and Mesa's lavapipe, a
//! software device, in CI), Metal (macOS) or DX12 (Windows). The weights are
//! uploaded once ([`Vit::use_gpu`]); per pass only the inputs (pixels, replaced
//! rows) go in and the outputs (logits, gradients at the sites asked for) come
//! out. Arithmetic is f32 throughout, sums accumulated in f32 in a fixed order.

mod context;
mod devices;
mod kernels;
mod ops;

pub use context::GpuTensor;
pub use devices::{devices, DeviceInfo};

use super::Tensor;
use crate::model::vit::{Vit, Weights};
use anyhow::{Context as _, Result};
use context::Context;
use std::fmt;
use std::sync::Arc;

/// An opened device, shared by the models placed on it.
#[derive(Clone)]
pub struct Device(Arc<Context>, u64);

impl Device {
    /// Opens device `index` of [`devices`].
    pub fn open(index: usize) -> Result<Device> {
        let adapter = devices::adapter(index)?;
        let budget = devices::memory_budget(&adapter);
        let context = Context::open(&adapter, budget / 2)?;
        Ok(Device(Arc::new(context), budget))
    }

    /// Bytes of device memory the passes may use: half of what was free when it
    /// was opened (the other half for buffers kept for reuse).
    pub fn pass_budget(&self) -> u64 {
        self.1 / 2
    }

    /// What the device is, for people.
    pub fn name(&self) -> String {
        let info = &self.0.info;
        format!("{} ({:?}, {})", info.name, info.backend, info.driver)
    }

    /// Whether it is a software device (its arithmetic runs on the host's cores).
    pub fn is_software(&self) -> bool {
        self.0.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The device's f32 throughput (FLOP/s, an FMA counted as 2), measured with a
    /// kernel of independent FMA chains run for at least 0.2 s.
    pub fn peak_flops(&self) -> f64 {
        let ctx = &self.0;
        const PER_THREAD: f64 = 1024.0 * 4.0 * 4.0 * 2.0;
        let mut groups = 64usize;
        loop {
            let out = ctx.tensor(groups * 256);
            let run = || {
                for _ in 0..4 {
                    ctx.dispatch(
                        &ctx.kernels.peak,
                        &[out.buffer()],
                        &[],
                        Context::spread(groups),
                    );
                }
                ctx.download(&out);
            };
            run();
            let start = std::time::Instant::now();
            run();
            let seconds = start.elapsed().as_secs_f64();
            if seconds >= 0.2 || groups >= 1 << 24 {
                return 4.0 * (groups * 256) as f64 * PER_THREAD / seconds;
            }
            groups *= 4;
        }
    }

    /// The largest tensor one kernel may bind, in values.
    pub fn max_tensor(&self) -> usize {
        let limits = &self.0.limits;
        (limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            / 4) as usize
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A model's weights on a device: the executor its passes run on.
pub struct Gpu {
    device: Device,
    weights: Weights<GpuTensor>,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Gpu({:?})", self.device)
    }
}

impl Gpu {
    /// Uploads `weights` to `device`.
    pub fn new(device: &Device, weights: &Weights) -> Result<Gpu> {
        let mut largest = 0;
        weights.map(|t| largest = largest.max(t.len()));
        if largest > device.max_tensor() {
            anyhow::bail!(
                "a weight of {largest} values is larger than the {} values a kernel can bind",
                device.max_tensor()
            );
        }
        let ctx = &device.0;
        let weights = weights.map(|t| ctx.upload_bytes(bytemuck::cast_slice(t)));
        ctx.submit();
        Ok(Gpu {
            device: device.clone(),
            weights,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}

impl Tensor for GpuTensor {
    fn numel(&self) -> usize {
        self.len()
    }
}

impl Vit {
    /// Runs this model's passes on `device` from now on, its weights uploaded there.
    pub fn use_gpu(&mut self, device: &Device) -> Result<()> {
        let gpu = Gpu::new(device, &self.weights)
            .with_context(|| format!("placing the model on {}", device.name()))?;
        self.gpu = Some(Arc::new(gpu));
        Ok(())
    }

    /// The device this model's passes run on, if not the CPU.
    pub fn gpu(&self) -> Option<&Device> {
        self.gpu.as_ref().map(|g| g.device())
    }
}
