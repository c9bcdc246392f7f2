-- The schema of version 1 (before schedules), as pg_dump wrote it from a fresh database that
-- actors/pg_schema.py of that version prepared: what tests/test_pg_schedules.py migrates from.

CREATE TABLE public.task_queue_intake (
    one boolean DEFAULT true NOT NULL,
    bound bigint NOT NULL,
    CONSTRAINT task_queue_intake_one_check CHECK (one)
);

CREATE TABLE public.task_queue_schema (
    version integer NOT NULL
);

CREATE TABLE public.task_queue_tasks (
    seq bigint NOT NULL,
    id text NOT NULL,
    payload bytea NOT NULL,
    max_retries integer NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    last_error text,
    next_attempt_at double precision,
    priority smallint DEFAULT 0 NOT NULL,
    timeout_ms bigint,
    result bytea,
    target bytea,
    queue text DEFAULT 'default'::text NOT NULL,
    owner text,
    lease_until timestamp with time zone,
    enqueued_by text NOT NULL
);

ALTER TABLE public.task_queue_tasks ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.task_queue_tasks_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

INSERT INTO public.task_queue_intake (one, bound) VALUES (true, 0);
INSERT INTO public.task_queue_schema (version) VALUES (1);

ALTER TABLE ONLY public.task_queue_intake
    ADD CONSTRAINT task_queue_intake_pkey PRIMARY KEY (one);

ALTER TABLE ONLY public.task_queue_tasks
    ADD CONSTRAINT task_queue_tasks_id_key UNIQUE (id);

ALTER TABLE ONLY public.task_queue_tasks
    ADD CONSTRAINT task_queue_tasks_pkey PRIMARY KEY (seq);

CREATE INDEX task_queue_claim ON public.task_queue_tasks USING btree (priority DESC, seq) WHERE (status = 'queued'::text);

CREATE INDEX task_queue_finished ON public.task_queue_tasks USING btree (updated_at) WHERE (status = ANY (ARRAY['done'::text, 'failed'::text, 'cancelled'::text]));

CREATE INDEX task_queue_leases ON public.task_queue_tasks USING btree (lease_until) WHERE (status = 'running'::text);

CREATE INDEX task_queue_owner ON public.task_queue_tasks USING btree (owner) WHERE (status = 'running'::text);

CREATE INDEX task_queue_status ON public.task_queue_tasks USING btree (status, seq);

