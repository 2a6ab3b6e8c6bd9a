rule train_arms:
    input:
        dataset=f"{RESULTS}/data/dataset.zarr",
        embeddings=f"{RESULTS}/embeddings/{{run}}.zarr",
        checkpoint=f"{RESULTS}/pretrain/{{run}}/model.ckpt",
        kept=f"{RESULTS}/pretrain/{{run}}/kept_checkpoints",  # truth_probe reads them
        events=f"{RESULTS}/data/events",
        synthetic=f"{RESULTS}/synthetic" if SYNTHETIC else [],
    output:
        f"{RESULTS}/{{task}}/arms/{{run}}.nc",
    log:
        f"{LOGS}/train_arms/{{task}}/{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/train_arms/{{task}}/{{run}}.tsv"
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
    shell:
        # One named run's FM head and random-init control (every seed, chosen on validation)
        "sdofm --threads {threads} benchmark {wildcards.task} --group {wildcards.run}"
        " --params {params.settings} --dataset {input.dataset:q}"
        " --embeddings {input.embeddings:q} --checkpoint {input.checkpoint:q}"
        " --events {input.events:q} --out {output:q}"
        + (f" --truth {RESULTS}/synthetic/ground_truth" if SYNTHETIC else "")
        + " > {log:q} 2>&1"


rule train_baselines:
    input:
        dataset=f"{RESULTS}/data/dataset.zarr",
        events=f"{RESULTS}/data/events",
        synthetic=f"{RESULTS}/synthetic" if SYNTHETIC else [],
    output:
        f"{RESULTS}/{{task}}/arms/baselines.nc",
    log:
        f"{LOGS}/train_baselines/{{task}}.log",
    benchmark:
        f"{BENCHMARKS}/train_baselines/{{task}}.tsv"
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
    shell:
        # The task's own arms, once for every run: no backbone among the inputs
        "sdofm --threads {threads} benchmark {wildcards.task} --group baselines"
        " --params {params.settings} --dataset {input.dataset:q}"
        " --events {input.events:q} --out {output:q}"
        + (f" --truth {RESULTS}/synthetic/ground_truth" if SYNTHETIC else "")
        + " > {log:q} 2>&1"


rule run_benchmark:
    input:
        arms=arm_groups,
        dataset=f"{RESULTS}/data/dataset.zarr",
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
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=runtime_for(60),
    params:
        settings=benchmark_params,
        out_dir=subpath(output.metrics, parent=True),
    shell:
        # Every run's arms and the baselines on the same test rows and bootstrap resamples
        "sdofm --threads {threads} score {wildcards.task} {input.arms:q}"
        " --params {params.settings} --dataset {input.dataset:q}"
        " --events {input.events:q} --out {params.out_dir:q}"
        + (f" --truth {RESULTS}/synthetic/ground_truth" if SYNTHETIC else "")
        + " > {log:q} 2>&1"
