# One rule trains every run of every paper: its inputs are the checkpoints that the run's
# frozen nodes load, so teacher -> assistant -> student chains follow from the specs alone.


rule train:
    input:
        dependency_checkpoints,
    output:
        checkpoint=f"{RESULTS}/runs/{{run}}/checkpoint.pt",
        epochs=f"{RESULTS}/runs/{{run}}/epochs.csv",
        metrics=f"{RESULTS}/runs/{{run}}/metrics.json",
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv"
    group:
        train_group
    conda:
        "../envs/kdrepro.yaml"
    threads: config["threads_per_job"]
    resources:
        **train_device_resources(),
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        train_slot=1,
    params:
        spec=run_spec_json,
        setting=SETTING,
        device=config["device"],
        speed=SPEED_FLAGS,
    shell:
        "kdrepro train --spec-json {params.spec:q} --setting {params.setting} --device {params.device}"
        " {params.speed} --threads {threads} --no-progress > {log} 2>&1"
