rule pretrain_backbone:
    input:
        f"{RESULTS}/data/dataset.zarr",
    output:
        checkpoint=f"{RESULTS}/pretrain/{BACKBONE}/model.ckpt",
        loss_curve=report(
            f"{RESULTS}/pretrain/{BACKBONE}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Pretraining",
        ),
        reconstructions=report(
            f"{RESULTS}/pretrain/{BACKBONE}/reconstructions.png",
            caption="../report/reconstructions.rst",
            category="Pretraining",
        ),
    log:
        f"{LOGS}/pretrain_backbone/{BACKBONE}.log",
    benchmark:
        f"{BENCHMARKS}/pretrain_backbone/{BACKBONE}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=runtime_for(720),
        gpu=1,
        # Launcher of the training processes: none for one device; for several GPUs or nodes
        # the slurm profile sets "srun", one process per task (Lightning turns them into DDP ranks).
        launcher="",
    params:
        settings=as_arg("pretrain"),
    shell:
        "{resources.launcher} sdofm --threads {threads} pretrain --params {params.settings} --dataset {input} --out {output.checkpoint} > {log} 2>&1"
