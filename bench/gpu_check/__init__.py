"""GPU acceptance check of the production training settings, in under 4 minutes on one GPU.

    python -m bench.gpu_check --out work/gpu_check.json [--models eva02_l vit_h14 convnext_xxl]
                              [--steps 10] [--images 256] [--sd2 PIPELINE_DIR] [--set KEY=VALUE ...]
    python -m bench.gpu_check --smoke --out x.json     # the same code on the CPU at toy sizes

For each production config (configs/eva02_l.yaml: EVA02-L @ 336, configs/vit_h14.yaml: ViT-H-14 @
224, configs/convnext_xxl.yaml: ConvNeXt-XXL @ 256), at random init (backbone.pretrained: null, no
download) and with every other setting of the config (batch size, grad_accum, gradient
checkpointing, EMA, layer decay, precision: auto is bf16 on A100 / H100, fp16 + GradScaler on
older GPUs):
  trainer   images/s of models.loop.train_one_epoch (the code a fold's training runs) on a
            memory-mapped image cache, fine-tuning phase (bench/train_step.py)
  bare      images/s of a bare forward / backward / optimizer step of the same model; the ratio
            trainer / bare has the goal >= 0.9
  memory    peak GPU memory of the trainer's steps (torch.cuda.max_memory_allocated)
  stream    images/s of the streaming source (data.source: stream, the config's image size and
            data.workers) decoding synthetic 768-px PNGs written to a temporary folder, against
            the trainer's demand (its images/s): >= 1 keeps one GPU fed
With --sd2 (a local diffusers Stable Diffusion 2 pipeline folder): images/s of
datagen.generate's rendering at 512 px, 20 steps. Without a CUDA device the check refuses to
run (exit 2) unless --smoke is given: the tests run --smoke, so this script cannot rot.
Prints a table and writes the figures to --out (JSON, rewritten after each model).
"""
