rule run_benchmark:
    input:
        dataset=f"{RESULTS}/data/dataset.zarr",
        embeddings=f"{RESULTS}/embeddings/{BACKBONE}.zarr",
        checkpoint=f"{RESULTS}/pretrain/{BACKBONE}/model.ckpt",
        kept=f"{RESULTS}/pretrain/{BACKBONE}/kept_checkpoints",  # truth_probe reads them
        events=f"{RESULTS}/data/events",
        synthetic=f"{RESULTS}/synthetic" if SYNTHETIC else [],
    output:
        metrics=f"{RESULTS}/{{task}}/metrics.json",
        predictions=f"{RESULTS}/{{task}}/predictions.csv",
        samples=f"{RESULTS}/{{task}}/samples.nc",
    log:
        f"{LOGS}/run_benchmark/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/run_benchmark/{{task}}.tsv"
    # before the reports: with every task's training done first, the cores are never left
    # waiting on the last long task while the short reports ran earlier
    priority: 1
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=runtime_for(240),
        gpu=1,
    params:
        settings=benchmark_params,
        out_dir=subpath(output.metrics, parent=True),
    shell:
        "sdofm --threads {threads} benchmark {wildcards.task} --params {params.settings} --dataset {input.dataset:q}"
        " --embeddings {input.embeddings:q} --checkpoint {input.checkpoint:q}"
        " --events {input.events:q} --out {params.out_dir:q}"
        + (f" --truth {RESULTS}/synthetic/ground_truth" if SYNTHETIC else "")
        + " > {log:q} 2>&1"
