/* budget: the bytes of image payloads (base64 and raw bytes) this process holds at once, capped
 * by --max-memory. The load stage takes an image's share before it reads the file and the item
 * gives it back when it drops its payload (item_drop_payload, item_free), so a folder of 60 MB
 * images holds a few of them, not a queue full. One image larger than the whole budget is still
 * loaded, alone. Process-wide: worker processes that load images have their own. */
#ifndef ANNOTATE_BUDGET_H
#define ANNOTATE_BUDGET_H

#include <stddef.h>
#include <stdint.h>

/* Sets the cap (0: none). Call before any image is loaded. */
void budget_set(uint64_t max_bytes);

/* Waits until n more bytes fit (or nothing is held), then counts them. While it waits it calls
 * alive(arg) about every second (a worker says it is not stuck), and gives up, returning -1,
 * when stop(arg) becomes true. 0 when taken. */
int budget_take(uint64_t n, void (*alive)(const void *), int (*stop)(const void *), const void *arg);

void budget_give(uint64_t n);

/* Bytes held now, and the most ever held (for tests and the summary). */
uint64_t budget_held(void);
uint64_t budget_peak(void);

#endif
