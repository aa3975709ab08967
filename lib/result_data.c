/* lib/result_data.c — see include/sdefed/result_data.h. */
#include "sdefed/result_data.h"

#include <stdlib.h>

void result_data_clear(Sdefed__QueryResult *r)
{
    for (size_t k = 0; k < r->n_cells; k++)
        sdefed__cell__free_unpacked(r->cells[k], NULL);
    free(r->cells);
    r->cells = NULL;
    r->n_cells = 0;
    for (size_t k = 0; k < r->n_catalog; k++)
        sdefed__dataset_info__free_unpacked(r->catalog[k], NULL);
    free(r->catalog);
    r->catalog = NULL;
    r->n_catalog = 0;
    for (size_t k = 0; k < r->n_summaries; k++)
        sdefed__summary__free_unpacked(r->summaries[k], NULL);
    free(r->summaries);
    r->summaries = NULL;
    r->n_summaries = 0;
    for (size_t k = 0; k < r->n_surveil; k++)
        sdefed__surveil_row__free_unpacked(r->surveil[k], NULL);
    free(r->surveil);
    r->surveil = NULL;
    r->n_surveil = 0;
    for (size_t k = 0; k < r->n_validations; k++)
        sdefed__validation__free_unpacked(r->validations[k], NULL);
    free(r->validations);
    r->validations = NULL;
    r->n_validations = 0;
}
