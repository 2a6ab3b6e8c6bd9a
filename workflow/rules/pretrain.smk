rule pretrain_backbone:
    input:
        f"{RESULTS}/data/dataset.zarr",
    output:
        f"{RESULTS}/pretrain/{BACKBONE}/model.ckpt",
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
        # Launcher of the training processes: empty here; the slurm profile sets "srun", which
        # starts one process per task (GPU) for Lightning's DDP across nodes.
        mpi="",
    params:
        settings=as_arg("pretrain"),
    shell:
        "{resources.mpi} sdofm pretrain --params {params.settings} --dataset {input} --out {output} > {log} 2>&1"
