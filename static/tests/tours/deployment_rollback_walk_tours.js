/** @odoo-module alias=deployment_rollback.walk_tours **/
/* What a new administrator walked into (issue 14), as screens: run by tests/test_tours_walk.py.
   Inside a dialog, the tour looks for triggers within the dialog: no ".modal" in the selectors. */

import tour from "web_tour.tour";

/* Fails the tour when an element of *selector* shows its text cut ("Se cum..."). */
function assertNotCut(selector) {
    const cut = [...document.querySelectorAll(selector)].filter((el) => el.scrollWidth > el.clientWidth + 1);
    if (cut.length) {
        throw new Error(`cut at ${window.innerWidth} px: ${cut.map((el) => el.textContent.trim()).join(", ")}`);
    }
}

/* Fails the tour when a technical name ("deployment.escalation.level,1", "verify_live") is on the screen. */
function assertNoTechnicalNames() {
    const text = document.querySelector(".o_action_manager").innerText;
    const found = text.match(/deployment\.[a-z_.]+(,\d+)?|\bverify_live\b|\blost_rows\b/);
    if (found) {
        throw new Error(`a technical name is shown: ${found[0]}`);
    }
}

const CHECKLIST = "/web#action=deployment_rollback.deployment_rollback_wizard_action";

tour.register("deployment_rollback_checklist_marks_what_is_missing", {test: true, url: CHECKLIST}, [
    {
        content: "The checklist is open",
        trigger: '.o_field_widget[name="line_ids"] td[name="name"]',
        run() {},
    },
    {
        content: "The decision's choices are all in view",
        trigger: '.o_field_widget[name="decision"] input[type="radio"] + label:contains("Roll back")',
        extra_trigger: '.o_field_widget[name="decision"] label:contains("Keep monitoring")',
        run() {},
    },
    {
        content: "Go on without deciding",
        trigger: 'button[name="action_next"]',
    },
    {
        content: "The form marks the decision as missing",
        trigger: '.o_field_widget.o_field_invalid[name="decision"]',
        run() {},
    },
    {
        content: "and who took part",
        trigger: '.o_field_widget.o_field_invalid[name="participant_ids"]',
        run() {
            if (document.querySelectorAll(".modal").length > 1 || document.querySelector(".o_error_dialog")) {
                throw new Error("an error dialog is stacked over the checklist");
            }
        },
    },
    {
        content: "The checklist is still there, on its first step",
        trigger: '.o_statusbar_status button[aria-checked="true"]:contains("Triggers and decision")',
        run() {},
    },
    {
        content: "Leave it",
        trigger: '.modal-footer button:contains("Cancel")',
    },
    {
        content: "The checklist is closed",
        trigger: "body:not(:has(.modal))",
        run() {},
    },
]);

tour.register(
    "deployment_rollback_finished_rollback_reads_plainly",
    {test: true, url: "/web#action=deployment_rollback.deployment_rollback_action"},
    [
    {
        content: "Open the finished rollback",
        trigger: '.o_list_view tr.o_data_row td[name="name"]:contains("RB/")',
    },
    {
        content: "The escalation level is named by its role",
        trigger: '.o_form_view .o_field_widget[name="escalation_level_id"]:contains("Technical lead")',
        run() {},
    },
    {
        content: "A finished rollback shows no ETA and no 'Within target'",
        trigger: '.o_form_view .o_statusbar_status button[aria-checked="true"]:contains("Done")',
        run() {
            for (const name of ["eta", "rto_status"]) {
                if (document.querySelector(`.o_form_view .o_field_widget[name="${name}"]`)) {
                    throw new Error(`${name} is shown on a finished rollback`);
                }
            }
        },
    },
    {
        content: "Open its procedure",
        trigger: '.o_notebook .nav-link:contains("Procedure")',
    },
    {
        content: "The steps say what they do",
        trigger: '.o_field_widget[name="step_ids"] td:contains("Check the restored database")',
        run() {
            assertNoTechnicalNames();
        },
    },
    // The tour ends once the chatter has loaded, so no request of the page is left running on the test's
    // cursor when the test goes on.
    {
        content: "The chatter has loaded",
        trigger: ".o_Chatter .o_Message",
        run() {},
    },
    ]
);

tour.register("deployment_rollback_spanish_columns_are_not_cut", {test: true, url: CHECKLIST}, [
    {
        content: "El checklist en español",
        trigger: '.o_field_widget[name="line_ids"] th[data-name="holds"]:contains("Se cumple")',
        run() {
            assertNotCut('.modal .o_field_widget[name="line_ids"] th[data-name="holds"] .text-truncate');
            assertNotCut('.modal .o_field_widget[name="line_ids"] td[name="category"]');
        },
    },
    {
        content: "Los nombres de los disparadores en español",
        trigger: 'td[name="name"]:contains("Errores de migración que afectan los datos")',
        run() {},
    },
    {
        content: "Cerrar",
        trigger: '.modal-footer button:contains("Cancelar")',
    },
    {
        content: "Cerrado",
        trigger: "body:not(:has(.modal))",
        run() {},
    },
]);

tour.register(
    "deployment_rollback_spanish_quarters_are_not_cut",
    {test: true, url: "/web#action=deployment_rollback.deployment_drill_overview_action_open"},
    [
    {
        content: "Los simulacros por trimestre en español",
        trigger: '.o_field_widget[name="line_ids"] th[data-name="quarter"]',
        run() {
            assertNotCut('.o_field_widget[name="line_ids"] th .text-truncate');
            assertNotCut('.o_field_widget[name="line_ids"] td');
        },
    },
    ]
);
