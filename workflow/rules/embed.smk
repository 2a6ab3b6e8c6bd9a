rule embed_month:
    input:
        dataset=f"{RESULTS}/data/dataset.zarr",
        checkpoint=f"{RESULTS}/pretrain/{{run}}/model.ckpt",
    output:
        temp(directory(f"{RESULTS}/embeddings/months/{{run}}/{{period}}.zarr")),
    log:
        f"{LOGS}/embed_month/{{run}}/{{period}}.log",
    benchmark:
        f"{BENCHMARKS}/embed_month/{{run}}/{{period}}.tsv"
    conda:
        ENV
    # one: a second thread does not speed a month up on CPU, and two months run side by side
    # (the slurm profile gives a GPU job more, for reading and decompressing the store)
    threads: 1
    resources:
        mem_mb=4000,
        runtime=runtime_for(120),
        gpu=1,
    params:
        settings=as_arg("embed"),
    shell:
        "sdofm --threads {threads} embed --params {params.settings} --dataset {input.dataset:q}"
        " --checkpoint {input.checkpoint:q} --period {wildcards.period} --out {output:q} > {log:q} 2>&1"


rule embed_times:
    input:
        dataset=f"{RESULTS}/data/dataset.zarr",
        parts=expand(
            f"{RESULTS}/embeddings/months/{{run}}/{{period}}.zarr",
            period=PERIODS,
            allow_missing=True,
        ),
    output:
        directory(f"{RESULTS}/embeddings/{{run}}.zarr"),
    log:
        f"{LOGS}/embed_times/{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/embed_times/{{run}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=runtime_for(30),
    params:
        settings=as_arg("embed"),
    shell:
        "sdofm embed --params {params.settings} --dataset {input.dataset:q} --out {output:q}"
        " --merge {input.parts:q} > {log:q} 2>&1"


rule map_embeddings:
    input:
        embeddings=f"{RESULTS}/embeddings/{{run}}.zarr",
        dataset=f"{RESULTS}/data/dataset.zarr",
    output:
        png=report(
            f"{RESULTS}/embeddings/{{run}}.map.png",
            caption="../report/embedding_map.rst",
            category="Pretraining",
        ),
        csv=f"{RESULTS}/embeddings/{{run}}.map.csv",
    log:
        f"{LOGS}/map_embeddings/{{run}}.log",
    benchmark:
        f"{BENCHMARKS}/map_embeddings/{{run}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=runtime_for(20),
    shell:
        "sdofm map --embeddings {input.embeddings:q} --dataset {input.dataset:q}"
        " --png {output.png:q} --csv {output.csv:q} > {log:q} 2>&1"
