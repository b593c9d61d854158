/* worker: the main of a worker process of the processes strategy (annotate started with
 * IPC_WORKER_ARG, see ipc.h): it reads its configuration from the parent's first frame, then
 * serves items until its stdin closes. Returns the process exit status. */
#ifndef ANNOTATE_WORKER_H
#define ANNOTATE_WORKER_H

int exec_proc_worker_main(void);

#endif
