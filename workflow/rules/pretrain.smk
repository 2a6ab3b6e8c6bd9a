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
        runtime=720,
    params:
        settings=as_arg("pretrain"),
    shell:
        "sdofm pretrain --params {params.settings} --dataset {input} --out {output} > {log} 2>&1"
