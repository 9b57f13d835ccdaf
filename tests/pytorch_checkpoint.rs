//! The PyTorch checkpoint reader against the same weights saved as safetensors: the MAE
//! fixture's `{'model': state_dict}` `.pth` must give every tensor bit for bit.

mod common;
use neuronpath::model::checkpoint::read_pytorch_tensors;
use std::collections::HashMap;

#[test]
fn mae_pth_matches_its_safetensors_bit_for_bit() {
    let pth =
        read_pytorch_tensors(&common::shared("fixtures/mae-cifar10/mae-cifar10.pth")).unwrap();
    let bytes = std::fs::read(common::shared(
        "fixtures/mae-cifar10/mae-cifar10.safetensors",
    ))
    .unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let expected: HashMap<String, (Vec<usize>, Vec<u32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let bits = view
                .data()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), bits))
        })
        .collect();

    assert_eq!(pth.len(), 80);
    assert_eq!(expected.len(), 80);
    // The order the pickle stores: the model's registration order.
    let names: Vec<&str> = pth.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(
        names[..3],
        ["cls_token", "pos_embed", "patch_embed.proj.weight"]
    );
    assert_eq!(names[names.len() - 1], "head.bias");
    for (name, shape, values) in &pth {
        let (want_shape, want_bits) = &expected[name];
        assert_eq!(shape, want_shape, "{name}");
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert!(bits == *want_bits, "{name}: values differ");
    }
    let parameters: usize = pth.iter().map(|(_, _, values)| values.len()).sum();
    assert_eq!(parameters, 1_205_898);
}
