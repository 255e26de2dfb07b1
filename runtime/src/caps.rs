//! The capabilities report of this machine (`docs/CAPS.md` §1), as `shadergen caps` prints it.
//!
//! ```text
//! wgpu adapter (as Gpu::new opens it) ──► features, limits, info ─┐
//! wgpu Instance ──► WGSL language features ───────────────────────┼─► codegen::caps::Caps
//! WasmRunner's wasmtime engine ──► validates the §1 probe modules ┘
//! ```
//!
//! Names are WebGPU's: features as `GPUFeatureName` (wgpu's names without its `wgpu-` native
//! extensions), limits in camelCase. Nothing is assumed: a fact wgpu does not know (the
//! adapter's architecture) is `null`.

use crate::RuntimeError;
use codegen::caps::{AdapterInfo, AdapterLimits, Caps, Engine, SCHEMA, WasmSupport, WebGpu};

/// What [`local`] found.
pub struct LocalCaps {
    /// The report; `webgpu` is `None` when no adapter was found.
    pub caps: Caps,
    /// Why there is no adapter, when there is none.
    pub no_adapter: Option<RuntimeError>,
}

/// The report's `source` for reports of this function.
pub const SOURCE: &str = "shadergen caps (wgpu)";

/// This machine's report: the wgpu adapter `Gpu::new` would open (honouring `WGPU_BACKEND`
/// and `WGPU_ADAPTER_NAME`), and what the runtime's wasmtime engine validates. Fails only when
/// the wasmtime engine cannot be built; a missing adapter is a report with `webgpu` null.
pub fn local() -> Result<LocalCaps, RuntimeError> {
    let wasm = crate::wasm::WasmRunner::new()?.support();
    let (webgpu, no_adapter) = match crate::open_adapter() {
        Ok((instance, adapter)) => (Some(webgpu(&instance, &adapter)), None),
        Err(e) => (None, Some(e)),
    };
    let caps =
        Caps { schema: SCHEMA, source: SOURCE.into(), user_agent: None, engine: Engine::WgpuNative, webgpu, wasm };
    Ok(LocalCaps { caps, no_adapter })
}

fn webgpu(instance: &wgpu::Instance, adapter: &wgpu::Adapter) -> WebGpu {
    let info = adapter.get_info();
    let mut features: Vec<String> = adapter
        .features()
        .iter()
        .filter_map(|f| f.as_str())
        .filter(|name| !name.starts_with("wgpu-"))
        .map(str::to_string)
        .collect();
    // A WebGPU-compliant adapter is a core (not compatibility-mode) one.
    if adapter.get_downlevel_capabilities().is_webgpu_compliant() {
        features.push("core-features-and-limits".into());
    }
    features.sort();
    features.dedup();
    let language = instance.wgsl_language_features();
    let mut wgsl: Vec<String> = [
        (wgpu::WgslLanguageFeatures::ReadOnlyAndReadWriteStorageTextures, "readonly_and_readwrite_storage_textures"),
        (wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct, "packed_4x8_integer_dot_product"),
        (wgpu::WgslLanguageFeatures::UnrestrictedPointerParameters, "unrestricted_pointer_parameters"),
        (wgpu::WgslLanguageFeatures::PointerCompositeAccess, "pointer_composite_access"),
    ]
    .into_iter()
    .filter(|(flag, _)| language.contains(flag.clone()))
    .map(|(_, name)| name.to_string())
    .collect();
    wgsl.sort();
    WebGpu {
        adapter: AdapterInfo {
            vendor: Some(vendor_name(info.vendor)),
            // wgpu does not know the architecture.
            architecture: None,
            device: Some(info.name.clone()),
            description: Some(format!("{} {} ({:?})", info.driver, info.driver_info, info.backend).trim().to_string()),
        },
        features,
        limits: limits(&adapter.limits()),
        wgsl_language_features: wgsl,
        is_fallback_adapter: info.device_type == wgpu::DeviceType::Cpu,
    }
}

/// WebGPU's `vendor` is a name; wgpu has the PCI (or Vulkan) vendor id.
fn vendor_name(id: u32) -> String {
    match id {
        0x1002 => "amd".into(),
        0x10de => "nvidia".into(),
        0x8086 => "intel".into(),
        0x106b => "apple".into(),
        0x13b5 => "arm".into(),
        0x5143 => "qualcomm".into(),
        0x1010 => "imagination".into(),
        0x1414 => "microsoft".into(),
        // VK_VENDOR_ID_MESA: lavapipe, llvmpipe.
        0x10005 => "mesa".into(),
        id => format!("0x{id:04x}"),
    }
}

/// Every wgpu limit WebGPU also has, by its WebGPU name.
fn limits(l: &wgpu::Limits) -> AdapterLimits {
    let mut out = AdapterLimits::spec_defaults();
    let all: [(&str, u64); 31] = [
        ("maxTextureDimension1D", l.max_texture_dimension_1d.into()),
        ("maxTextureDimension2D", l.max_texture_dimension_2d.into()),
        ("maxTextureDimension3D", l.max_texture_dimension_3d.into()),
        ("maxTextureArrayLayers", l.max_texture_array_layers.into()),
        ("maxBindGroups", l.max_bind_groups.into()),
        ("maxBindGroupsPlusVertexBuffers", l.max_bind_groups_plus_vertex_buffers.into()),
        ("maxBindingsPerBindGroup", l.max_bindings_per_bind_group.into()),
        ("maxDynamicUniformBuffersPerPipelineLayout", l.max_dynamic_uniform_buffers_per_pipeline_layout.into()),
        ("maxDynamicStorageBuffersPerPipelineLayout", l.max_dynamic_storage_buffers_per_pipeline_layout.into()),
        ("maxSampledTexturesPerShaderStage", l.max_sampled_textures_per_shader_stage.into()),
        ("maxSamplersPerShaderStage", l.max_samplers_per_shader_stage.into()),
        ("maxStorageBuffersPerShaderStage", l.max_storage_buffers_per_shader_stage.into()),
        ("maxStorageTexturesPerShaderStage", l.max_storage_textures_per_shader_stage.into()),
        ("maxUniformBuffersPerShaderStage", l.max_uniform_buffers_per_shader_stage.into()),
        ("maxUniformBufferBindingSize", l.max_uniform_buffer_binding_size),
        ("maxStorageBufferBindingSize", l.max_storage_buffer_binding_size),
        ("minUniformBufferOffsetAlignment", l.min_uniform_buffer_offset_alignment.into()),
        ("minStorageBufferOffsetAlignment", l.min_storage_buffer_offset_alignment.into()),
        ("maxVertexBuffers", l.max_vertex_buffers.into()),
        ("maxBufferSize", l.max_buffer_size),
        ("maxVertexAttributes", l.max_vertex_attributes.into()),
        ("maxVertexBufferArrayStride", l.max_vertex_buffer_array_stride.into()),
        ("maxInterStageShaderVariables", l.max_inter_stage_shader_variables.into()),
        ("maxColorAttachments", l.max_color_attachments.into()),
        ("maxColorAttachmentBytesPerSample", l.max_color_attachment_bytes_per_sample.into()),
        ("maxComputeWorkgroupStorageSize", l.max_compute_workgroup_storage_size.into()),
        ("maxComputeInvocationsPerWorkgroup", l.max_compute_invocations_per_workgroup.into()),
        ("maxComputeWorkgroupSizeX", l.max_compute_workgroup_size_x.into()),
        ("maxComputeWorkgroupSizeY", l.max_compute_workgroup_size_y.into()),
        ("maxComputeWorkgroupSizeZ", l.max_compute_workgroup_size_z.into()),
        ("maxComputeWorkgroupsPerDimension", l.max_compute_workgroups_per_dimension.into()),
    ];
    for (name, value) in all {
        out.set(name, value);
    }
    out
}

impl crate::wasm::WasmRunner {
    /// What this engine validates, by the §1 probe modules: simd128 yes; relaxed SIMD no
    /// (turned off: its results may differ between machines); threads no (wasmtime is built
    /// without them).
    pub fn support(&self) -> WasmSupport {
        WasmSupport::probe(|bytes| wasmtime::Module::validate(self.engine(), bytes).is_ok())
    }
}
