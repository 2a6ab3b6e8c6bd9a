rule pretrain_backbone:
    input:
        f"{RESULTS}/data/dataset.zarr",
    output:
        checkpoint=f"{RESULTS}/pretrain/{{run}}/model.ckpt",
        kept=directory(f"{RESULTS}/pretrain/{{run}}/kept_checkpoints"),
        loss_curve=report(
            f"{RESULTS}/pretrain/{{run}}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Pretraining",
        ),
        reconstructions=report(
            f"{RESULTS}/pretrain/{{run}}/reconstructions.png",
            caption="../report/reconstructions.rst",
            category="Pretraining",
        ),
    log:
        f"{LOGS}/pretrain_backbone/{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/pretrain_backbone/{{run}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=runtime_for(720),
        gpu=1,
    params:
        settings=run_settings,
        # Nothing for one process; `srun` with one task per GPU when the slurm profile gives
        # the job nodes and tasks_per_node (Lightning turns the tasks into DDP ranks).
        launcher=training_launcher,
    shell:
        "{params.launcher} sdofm --threads {threads} pretrain --params {params.settings} --dataset {input:q} --out {output.checkpoint:q} > {log:q} 2>&1"
