//! One opened GPU: its device and queue, the kernels, a pool of buffers, and the
//! commands recorded since the last submission.
//!
//! Commands are recorded into one encoder and submitted in order; a host write
//! (`queue.write_buffer`) runs before the next submission's commands, so the
//! encoder is submitted before every upload, and a pooled buffer that a recorded
//! command still reads is never overwritten from the host.

use super::kernels::{Kernel, Kernels};
use anyhow::{bail, Context as _, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Commands recorded before the encoder is submitted (the device starts on them
/// while the host records more).
const COMMANDS_PER_SUBMIT: usize = 128;

/// The most workgroups along one dispatch dimension.
pub(super) const MAX_GROUPS: u32 = 65_535;

/// A buffer of `f32` values on the device, returned to its pool when dropped.
pub struct GpuTensor {
    buffer: Option<wgpu::Buffer>,
    len: usize,
    pool: Arc<Mutex<Pool>>,
}

impl GpuTensor {
    pub(super) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until dropped")
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.lock().expect("pool lock").put(buffer);
        }
    }
}

/// Freed buffers by size, for the next tensor of that size: a pass allocates the
/// same shapes layer after layer and pass after pass.
pub(super) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
    /// The most bytes kept; past it a freed buffer is released.
    limit: u64,
}

impl Pool {
    fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&size)?.pop()?;
        self.bytes -= size;
        Some(buffer)
    }

    fn put(&mut self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        if self.bytes + size > self.limit {
            return;
        }
        self.bytes += size;
        self.free.entry(size).or_default().push(buffer);
    }
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    commands: usize,
}

pub(super) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub kernels: Kernels,
    pool: Arc<Mutex<Pool>>,
    /// Read-back buffers by size.
    staging: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    pending: Mutex<Pending>,
    /// Bound where a kernel's binding is not used: one read-only, two writable.
    unused: [wgpu::Buffer; 3],
}

/// The bytes of `len` values (at least 4: no buffer is empty).
fn bytes_of(len: usize) -> u64 {
    (4 * len.max(1)) as u64
}

impl Context {
    /// Opens `adapter` with all it can do, and builds the kernels.
    pub fn open(adapter: &wgpu::Adapter, pool_limit: u64) -> Result<Context> {
        let info = adapter.get_info();
        let features = adapter.features();
        if !features.contains(wgpu::Features::IMMEDIATES) {
            bail!(
                "{}: the device cannot pass kernel parameters as immediates (push constants)",
                info.name
            );
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("neuronpath"),
            required_features: wgpu::Features::IMMEDIATES,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .with_context(|| format!("{}: cannot open the device", info.name))?;
        let kernels = Kernels::new(&device, &limits)
            .with_context(|| format!("{}: cannot build the kernels", info.name))?;
        let unused = [0, 1, 2].map(|_| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("unused binding"),
                size: 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        Ok(Context {
            device,
            queue,
            info,
            limits,
            kernels,
            pool: Arc::new(Mutex::new(Pool {
                free: HashMap::new(),
                bytes: 0,
                limit: pool_limit,
            })),
            staging: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending {
                encoder: None,
                commands: 0,
            }),
            unused,
        })
    }

    /// What a kernel's unused binding gets: `0` read-only, `1` and `2` writable.
    pub fn unused(&self, which: usize) -> &wgpu::Buffer {
        &self.unused[which]
    }

    /// A tensor of `len` values, its contents undefined.
    pub fn tensor(&self, len: usize) -> GpuTensor {
        let size = bytes_of(len);
        let reused = self.pool.lock().expect("pool lock").take(size);
        let buffer = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        GpuTensor {
            buffer: Some(buffer),
            len,
            pool: self.pool.clone(),
        }
    }

    /// A tensor holding `bytes` (4 per value).
    pub fn upload_bytes(&self, bytes: &[u8]) -> GpuTensor {
        let t = self.tensor(bytes.len() / 4);
        if !bytes.is_empty() {
            self.submit();
            self.queue.write_buffer(t.buffer(), 0, bytes);
        }
        t
    }

    pub fn zeros(&self, len: usize) -> GpuTensor {
        let t = self.tensor(len);
        self.record(|e| e.clear_buffer(t.buffer(), 0, None));
        t
    }

    pub fn duplicate(&self, t: &GpuTensor) -> GpuTensor {
        let copy = self.tensor(t.len);
        let size = bytes_of(t.len);
        self.record(|e| e.copy_buffer_to_buffer(t.buffer(), 0, copy.buffer(), 0, size));
        copy
    }

    /// The values of `t`, once every command recorded so far has run.
    pub fn download(&self, t: &GpuTensor) -> Vec<f32> {
        if t.len == 0 {
            return Vec::new();
        }
        let size = bytes_of(t.len);
        let staging = self.staging_buffer(size);
        self.record(|e| e.copy_buffer_to_buffer(t.buffer(), 0, &staging, 0, size));
        self.submit();
        let slice = staging.slice(..size);
        slice.map_async(wgpu::MapMode::Read, |result| {
            result.expect("mapping a read-back buffer")
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("waiting for the device");
        let view = slice.get_mapped_range().expect("mapped read-back buffer");
        let values = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        self.staging
            .lock()
            .expect("staging lock")
            .entry(size)
            .or_default()
            .push(staging);
        values
    }

    fn staging_buffer(&self, size: u64) -> wgpu::Buffer {
        let reused = self
            .staging
            .lock()
            .expect("staging lock")
            .get_mut(&size)
            .and_then(Vec::pop);
        reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// Records `kernel` over `groups` workgroups (x, y, z) with `buffers` bound in
    /// order and `params` as its immediates.
    pub fn dispatch(
        &self,
        kernel: &Kernel,
        buffers: &[&wgpu::Buffer],
        params: &[u8],
        groups: [u32; 3],
    ) {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        self.record(|e| {
            let mut pass = e.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            if !params.is_empty() {
                pass.set_immediates(0, params);
            }
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
    }

    /// `count` workgroups laid out as (x, y) within the per-dimension limit; the
    /// kernels read their index back with `group_index`.
    pub fn spread(count: usize) -> [u32; 3] {
        let count = count.max(1) as u64;
        let x = count.min(MAX_GROUPS as u64);
        [x as u32, count.div_ceil(x) as u32, 1]
    }

    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.pending.lock().expect("encoder lock");
        let encoder = pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
        });
        f(encoder);
        pending.commands += 1;
        if pending.commands >= COMMANDS_PER_SUBMIT {
            Self::submit_pending(&self.queue, &mut pending);
        }
    }

    /// Submits what was recorded.
    pub fn submit(&self) {
        let mut pending = self.pending.lock().expect("encoder lock");
        Self::submit_pending(&self.queue, &mut pending);
    }

    fn submit_pending(queue: &wgpu::Queue, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            queue.submit([encoder.finish()]);
        }
        pending.commands = 0;
    }
}
