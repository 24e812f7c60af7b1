"""Architecture configs of the real hub checkpoints the course names, built in code.

Each config is written from the checkpoint's published ``config.json`` (only the fields that
change the architecture or the prompt length: widths, depths, heads, vocabulary, image and patch
sizes, image tokens). Nothing is downloaded; ``sizes.count`` instantiates them on the meta device.
The catalogue (``vlm_course.catalogue``) names which builder belongs to which checkpoint.
"""

from __future__ import annotations

from transformers import (
    Blip2Config,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipConfig,
    CLIPConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaNextConfig,
    MistralConfig,
    OPTConfig,
    Qwen2Config,
    SiglipConfig,
)

# CLIP ViT-L/14 at 336 px: the vision tower of every LLaVA checkpoint.
_CLIP_L_336 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
)
# LLaVA-NeXT any-res tile layouts (v1.6 checkpoints).
_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def clip_vit_base_patch32() -> CLIPConfig:
    # The published checkpoint is exactly the library default.
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32),
        projection_dim=512,
    )


def clip_vit_large_patch14() -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, projection_dim=768),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, projection_dim=768),
        projection_dim=768,
    )


def siglip_base_patch16_224() -> SiglipConfig:
    return SiglipConfig(
        # bos/eos left unset: the library defaults (49406/49407, CLIP's ids) only trigger a spurious warning.
        text_config=dict(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=64, pad_token_id=1,
                         bos_token_id=None, eos_token_id=None),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=16),
    )


def _blip_base() -> BlipConfig:
    return BlipConfig(
        text_config=dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=512, encoder_hidden_size=768),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=384, patch_size=16),
        projection_dim=512,
    )


def blip_image_captioning_base() -> BlipConfig:
    return _blip_base()


def blip_vqa_base() -> BlipConfig:
    return _blip_base()


def blip2_opt_2_7b() -> Blip2Config:
    vision = Blip2VisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                               image_size=224, patch_size=14, qkv_bias=True)
    qformer = Blip2QFormerConfig(vocab_size=30522, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, cross_attention_frequency=2, encoder_hidden_size=1408)
    text = OPTConfig(vocab_size=50304, hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
                     max_position_embeddings=2048, word_embed_proj_dim=2560, eos_token_id=50118)
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=32, image_token_index=50265)


# The LLaVA-1.5 / v1.6 recipe: CLIP ViT-L/14-336 read at its second-to-last layer, a 2-layer GELU MLP projector.
_LLAVA_CLIP_L_336 = dict(vision_config=dict(model_type="clip_vision_model", **_CLIP_L_336), projector_hidden_act="gelu",
                         vision_feature_layer=-2, vision_feature_select_strategy="default")

def llava_1_5_7b() -> LlavaConfig:
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, pad_token_id=32001)
    return LlavaConfig(text_config=text.to_dict(), image_token_index=32000, **_LLAVA_CLIP_L_336)


def llava_v1_6_mistral_7b() -> LlavaNextConfig:
    text = MistralConfig(vocab_size=32064, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         rms_norm_eps=1e-5, rope_theta=1_000_000.0, sliding_window=None)
    return LlavaNextConfig(text_config=text.to_dict(), image_token_index=32000, image_grid_pinpoints=_NEXT_PINPOINTS,
                           **_LLAVA_CLIP_L_336)


def llama3_llava_next_8b() -> LlavaNextConfig:
    text = LlamaConfig(vocab_size=128320, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                       rms_norm_eps=1e-5, rope_theta=500_000.0, bos_token_id=128000, eos_token_id=128009)
    return LlavaNextConfig(text_config=text.to_dict(), image_token_index=128256, image_grid_pinpoints=_NEXT_PINPOINTS,
                           **_LLAVA_CLIP_L_336)


def llava_interleave_qwen_0_5b() -> LlavaConfig:
    # llava-hf/llava-interleave-qwen-0.5b-hf: a Qwen1.5-0.5B language model (tied input/output
    # embeddings) behind a SigLIP-so400m vision tower whose full last layer feeds the projector.
    text = Qwen2Config(vocab_size=152000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                       num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=32768,
                       max_window_layers=21, rope_theta=1_000_000.0, use_sliding_window=False,
                       sliding_window=32768, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645)
    vision = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
                  num_attention_heads=16, image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh",
                  layer_norm_eps=1e-6, vision_use_head=False)
    return LlavaConfig(vision_config=vision, text_config=text.to_dict(), image_token_index=151646,
                       projector_hidden_act="gelu", vision_feature_layer=-1, vision_feature_select_strategy="full",
                       tie_word_embeddings=True)
