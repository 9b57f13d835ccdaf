//! The devices wgpu finds (`neuronpath devices`), in a fixed order: `--gpu N`
//! names the N-th.

use anyhow::{bail, Result};

/// One device, as `neuronpath devices` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceInfo {
    pub index: usize,
    pub name: String,
    /// Vulkan, Metal or DX12.
    pub backend: String,
    /// Discrete, integrated, virtual, or software (its arithmetic on the host's cores).
    pub kind: String,
    pub driver: String,
    /// Why the executor cannot run on it, if it cannot.
    pub unusable: Option<String>,
}

impl DeviceInfo {
    pub fn is_software(&self) -> bool {
        self.kind == "software"
    }
}

/// Vulkan, Metal and DX12 (narrowed by `WGPU_BACKEND` when set).
fn instance() -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends &= wgpu::Backends::PRIMARY;
    wgpu::Instance::new(descriptor)
}

/// The adapters, in the order wgpu enumerates them (by backend, then as the
/// driver lists them).
fn adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::PRIMARY))
}

/// Every device found, usable or not.
pub fn devices() -> Vec<DeviceInfo> {
    adapters()
        .iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = adapter.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete",
                wgpu::DeviceType::IntegratedGpu => "integrated",
                wgpu::DeviceType::VirtualGpu => "virtual",
                wgpu::DeviceType::Cpu => "software",
                wgpu::DeviceType::Other => "other",
            };
            DeviceInfo {
                index,
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                kind: kind.into(),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .into(),
                unusable: unusable(adapter),
            }
        })
        .collect()
}

/// Why the executor cannot run on `adapter`, if it cannot.
fn unusable(adapter: &wgpu::Adapter) -> Option<String> {
    if !adapter.features().contains(wgpu::Features::IMMEDIATES) {
        return Some("no immediates (push constants) for kernel parameters".into());
    }
    let limits = adapter.limits();
    if limits.max_compute_invocations_per_workgroup < 256
        || limits.max_compute_workgroup_storage_size < 16 * 1024
        || limits.max_storage_buffers_per_shader_stage < 6
    {
        return Some("compute limits below what the kernels need (256 threads, 16 KiB shared memory, 6 storage buffers)".into());
    }
    None
}

/// Adapter `index` of [`devices`], usable.
pub(super) fn adapter(index: usize) -> Result<wgpu::Adapter> {
    let mut found = adapters();
    if found.is_empty() {
        bail!("--gpu {index}: no GPU found (no Vulkan, Metal or DX12 device; on Linux the Vulkan loader libvulkan.so.1 and a driver are needed: `neuronpath devices` lists what is found)");
    }
    if index >= found.len() {
        bail!(
            "--gpu {index}: there are {} devices, 0 to {} (`neuronpath devices` lists them)",
            found.len(),
            found.len() - 1
        );
    }
    let adapter = found.swap_remove(index);
    if let Some(why) = unusable(&adapter) {
        bail!("--gpu {index} ({}): {why}", adapter.get_info().name);
    }
    Ok(adapter)
}

/// What the executor assumes it may use where the device does not say.
const UNKNOWN_BUDGET: u64 = 2 << 30;

/// Bytes of device memory the executor may use on `adapter`: on Vulkan, the
/// free part of its device-local memory (the driver's budget less what is in use,
/// VK_EXT_memory_budget; else the heap's size), 90% of it; elsewhere 2 GiB.
pub(super) fn memory_budget(adapter: &wgpu::Adapter) -> u64 {
    vulkan_free_memory(adapter).map_or(UNKNOWN_BUDGET, |free| free / 10 * 9)
}

#[cfg(any(target_os = "linux", target_os = "windows"))]
fn vulkan_free_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    use ash::vk;
    // SAFETY: the hal adapter is only read, while `adapter` keeps it alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
    let mut properties = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
    // SAFETY: a query into structures this function owns; the budget is left zero
    // by a driver without the extension.
    unsafe {
        instance.get_physical_device_memory_properties2(hal.raw_physical_device(), &mut properties)
    };
    let memory = properties.memory_properties;
    let heaps = &memory.memory_heaps[..memory.memory_heap_count as usize];
    (0..heaps.len())
        .filter(|&i| heaps[i].flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .map(|i| match budget.heap_budget[i] {
            0 => heaps[i].size,
            b => b.saturating_sub(budget.heap_usage[i]),
        })
        .max()
}

#[cfg(not(any(target_os = "linux", target_os = "windows")))]
fn vulkan_free_memory(_: &wgpu::Adapter) -> Option<u64> {
    None
}
