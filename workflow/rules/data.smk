rule simulate_sun:
    output:
        directory(f"{RESULTS}/synthetic"),
    log:
        f"{LOGS}/simulate_sun.log",
    benchmark:
        f"{BENCHMARKS}/simulate_sun.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=2000,
        runtime=runtime_for(60),
    params:
        settings=as_arg("synthetic"),
    shell:
        # {threads} processes render the frames (the files are the same for any number)
        "sdofm --threads {threads} simulate --params {params.settings} --out {output:q} > {log:q} 2>&1"


rule pull_sdoml:
    input:
        f"{RESULTS}/synthetic" if SYNTHETIC else [],
    output:
        directory(f"{RESULTS}/data/sdoml/{{period}}"),
    log:
        f"{LOGS}/pull_sdoml/{{period}}.log",
    benchmark:
        f"{BENCHMARKS}/pull_sdoml/{{period}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=runtime_for(240),
    params:
        # not what only the build reads: a new image size or range check keeps the pulls
        settings=as_arg(
            "sources", "data", omit=("data.image_size", "data.physical_range")
        ),
    shell:
        # One job per month (what that month's build reads). The synthetic mirror is this
        # rule's input; a real source is the URL in the config.
        "sdofm pull --params {params.settings} --period {wildcards.period} --out {output:q}"
        + (" --source {input:q}" if SYNTHETIC else "")
        + " > {log:q} 2>&1"


rule ingest_fits:
    input:
        **FITS_INPUTS,
        synthetic=f"{RESULTS}/synthetic" if SYNTHETIC else [],
    output:
        directory(f"{RESULTS}/data/fits/{{period}}"),
    log:
        f"{LOGS}/ingest_fits/{{period}}.log",
    benchmark:
        f"{BENCHMARKS}/ingest_fits/{{period}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=runtime_for(240),
    params:
        settings=as_arg("sources", "data", omit=SOURCE_ACCESS),
        files=fits_args,
    shell:
        # level-1 FITS of one month (sources.fits) into aia.zarr and hmi.zarr (Blos)
        "sdofm ingest-period --params {params.settings} --period {wildcards.period}"
        " --out {output:q} {params.files} > {log:q} 2>&1"


rule build_partition:
    input:
        sdoml=f"{RESULTS}/data/sdoml/{{period}}",
        frames=f"{RESULTS}/data/fits/{{period}}" if FITS else [],
    output:
        temp(directory(f"{RESULTS}/data/partitions/{{period}}.zarr")),
    log:
        f"{LOGS}/build_partition/{{period}}.log",
    benchmark:
        f"{BENCHMARKS}/build_partition/{{period}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=runtime_for(120),
    params:
        settings=as_arg("data", "splits"),
    shell:
        "sdofm build --params {params.settings} --sdoml {input.sdoml:q} --period {wildcards.period}"
        + (" --frames {input.frames:q}" if FITS else "")
        + " --out {output:q} > {log:q} 2>&1"


rule build_dataset:
    input:
        expand(f"{RESULTS}/data/partitions/{{period}}.zarr", period=PERIODS),
    output:
        store=directory(f"{RESULTS}/data/dataset.zarr"),
        qc=f"{RESULTS}/data/dataset.qc.csv",
    log:
        f"{LOGS}/build_dataset.log",
    benchmark:
        f"{BENCHMARKS}/build_dataset.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=runtime_for(60),
    params:
        settings=as_arg("data", "splits"),
    shell:
        "sdofm merge --params {params.settings} --out {output.store:q} {input:q} > {log:q} 2>&1"


rule fetch_events:
    output:
        f"{RESULTS}/data/downloads/{{kind}}.csv",
    log:
        f"{LOGS}/fetch_events/{{kind}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch_events/{{kind}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=runtime_for(30),
    params:
        settings=as_arg("data"),
    shell:
        # flares from HEK, F10.7 from LISIRD: online sources named in sources.events
        "sdofm fetch-events {wildcards.kind} --params {params.settings} --out {output:q} > {log:q} 2>&1"


rule collect_events:
    input:
        **EVENT_INPUTS,
        synthetic=f"{RESULTS}/synthetic" if SYNTHETIC else [],
    output:
        directory(f"{RESULTS}/data/events"),
    log:
        f"{LOGS}/collect_events.log",
    benchmark:
        f"{BENCHMARKS}/collect_events.tsv"
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=runtime_for(10),
    params:
        settings=events_settings(),
        files=event_args,
    shell:
        "sdofm events --params {params.settings} --out {output:q} {params.files} > {log:q} 2>&1"
