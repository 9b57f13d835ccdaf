//! The compute kernels (WGSL, in `shaders/`), their pipelines and their
//! parameters, laid out as the shaders' `Params` structs.

use anyhow::{bail, Result};
use bytemuck::{Pod, Zeroable};

const COMMON: &str = include_str!("shaders/common.wgsl");
const GEMM: &str = include_str!("shaders/gemm.wgsl");
const ROWS: &str = include_str!("shaders/rows.wgsl");
const ELEMENTWISE: &str = include_str!("shaders/elementwise.wgsl");
const COSINE: &str = include_str!("shaders/cosine.wgsl");
const PEAK: &str = include_str!("shaders/peak.wgsl");

/// A pipeline and the layout of its bindings.
pub(super) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel of the executor.
pub(super) struct Kernels {
    /// 64 x 64 tiles (4 x 4 values a thread), for products with a small side.
    pub gemm_small: Kernel,
    /// 128 x 128 tiles (8 x 8 values a thread).
    pub gemm_large: Kernel,
    pub layer_norm: Kernel,
    pub layer_norm_backward: Kernel,
    pub softmax: Kernel,
    pub softmax_backward: Kernel,
    pub activation: Kernel,
    pub activation_backward: Kernel,
    pub copy: Kernel,
    pub mean_rows: Kernel,
    pub cosine_logits: Kernel,
    pub cosine_backward: Kernel,
    /// FMAs only, for the benchmark's peak.
    pub peak: Kernel,
}

/// How a kernel's bindings are used, in binding order: `true` read-only.
type Access = &'static [bool];

const GEMM_ACCESS: Access = &[true, true, true, false];
const ROWS_ACCESS: Access = &[true, true, true, false, false, false];
const ELEMENTWISE_ACCESS: Access = &[true, true, false, false];
const COSINE_ACCESS: Access = &[true, true, true, false];

impl Kernels {
    pub fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Result<Kernels> {
        let largest = [
            std::mem::size_of::<GemmParams>(),
            std::mem::size_of::<RowParams>(),
            std::mem::size_of::<CopyParams>(),
            std::mem::size_of::<CosineParams>(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as u32;
        if limits.max_immediate_size < largest {
            bail!(
                "the device passes {} bytes of kernel parameters, the kernels need {largest}",
                limits.max_immediate_size
            );
        }
        let gemm = |tm: u32| {
            let source = GEMM
                .replace("{TM}", &tm.to_string())
                .replace("{TN}", &tm.to_string());
            let module = module(device, &source);
            kernel(
                device,
                &module,
                "main",
                GEMM_ACCESS,
                size_of::<GemmParams>(),
            )
        };
        let rows = module(device, ROWS);
        let row_kernel =
            |entry: &str| kernel(device, &rows, entry, ROWS_ACCESS, size_of::<RowParams>());
        let elementwise = module(device, ELEMENTWISE);
        let elem_kernel = |entry: &str| {
            kernel(
                device,
                &elementwise,
                entry,
                ELEMENTWISE_ACCESS,
                size_of::<CopyParams>(),
            )
        };
        let cosine = module(device, COSINE);
        let cos_kernel = |entry: &str| {
            kernel(
                device,
                &cosine,
                entry,
                COSINE_ACCESS,
                size_of::<CosineParams>(),
            )
        };
        Ok(Kernels {
            gemm_small: gemm(4),
            gemm_large: gemm(8),
            layer_norm: row_kernel("layer_norm"),
            layer_norm_backward: row_kernel("layer_norm_backward"),
            softmax: row_kernel("softmax"),
            softmax_backward: row_kernel("softmax_backward"),
            activation: elem_kernel("activation"),
            activation_backward: elem_kernel("activation_backward"),
            copy: elem_kernel("copy"),
            mean_rows: elem_kernel("mean_rows"),
            cosine_logits: cos_kernel("logits"),
            cosine_backward: cos_kernel("backward"),
            peak: kernel(device, &module(device, PEAK), "main", &[false], 0),
        })
    }
}

fn size_of<T>() -> usize {
    std::mem::size_of::<T>()
}

fn module(device: &wgpu::Device, source: &str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(format!("{COMMON}\n{source}").into()),
    })
}

fn kernel(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    access: Access,
    immediates: usize,
) -> Kernel {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = access
        .iter()
        .enumerate()
        .map(|(i, &read_only)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(entry),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: immediates as u32,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &[],
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    Kernel { pipeline, layout }
}

/// `gemm.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(super) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub c_rs: u32,
    pub inner_count: u32,
    pub a_outer: u32,
    pub a_inner: u32,
    pub b_outer: u32,
    pub b_inner: u32,
    pub c_outer: u32,
    pub c_inner: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub c_off: u32,
    pub flags: u32,
}

/// `rows.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(super) struct RowParams {
    pub count: u32,
    pub width: u32,
    pub rows: u32,
    pub full_rows: u32,
    pub row0: u32,
    pub eps: f32,
    pub scale: f32,
    pub flags: u32,
}

/// `elementwise.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(super) struct CopyParams {
    pub count: u32,
    pub neurons: u32,
    pub mode: u32,
    pub rows: u32,
    pub width: u32,
    pub s_stride: u32,
    pub s_row0: u32,
    pub s_row_step: u32,
    pub d_stride: u32,
    pub d_row0: u32,
    pub s_off: u32,
    pub d_off: u32,
    pub divisor: f32,
}

/// `cosine.wgsl`'s parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(super) struct CosineParams {
    pub seqs: u32,
    pub dim: u32,
    pub classes: u32,
    pub scale: f32,
}

/// `copy`'s modes (low bits) and flags.
pub(super) mod copy_mode {
    pub const SET: u32 = 0;
    pub const ADD: u32 = 1;
    pub const MUL: u32 = 2;
    pub const ZERO: u32 = 3;
    /// The source sequence of each destination sequence from the index binding.
    pub const INDEXED: u32 = 256;
    /// One source sequence for all.
    pub const SHARED: u32 = 512;
}
