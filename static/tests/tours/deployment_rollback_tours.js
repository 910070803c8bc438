/** @odoo-module alias=deployment_rollback.tours **/
/* The operator's main paths, walked in a real browser by the HttpCase tests (tests/test_tours.py). */

import tour from "web_tour.tour";

tour.register(
    "deployment_rollback_capture_snapshot",
    {test: true, url: "/web#action=base_setup.action_general_configuration"},
    [
        {
            content: "The Deployment Rollback block of Settings offers the capture",
            trigger: '#deployment_rollback button[name="action_deployment_capture_snapshot"]',
        },
        {
            content: "Name the snapshot before it is taken",
            trigger: '.o_field_widget[name="label"] input',
            run: "text before v2.3",
        },
        {
            content: "Capture it",
            trigger: 'button[name="action_capture"]',
        },
        {
            content: "The snapshot's record opens under its name, capturing while the helper works",
            trigger: '.o_form_view .o_statusbar_status button[aria-checked="true"]:contains("Capturing")',
            extra_trigger: '.o_form_view .oe_title:contains("before v2.3")',
            run() {},
        },
        {
            content: "It was requested by the person who clicked",
            trigger: '.o_form_view .o_field_widget[name="requested_by_id"]:contains("Administrator")',
            run() {},
        },
        {
            content: "The page follows the helper: verified, without Refresh",
            trigger: '.o_form_view .o_statusbar_status button[aria-checked="true"]:contains("Verified")',
            timeout: 120000,
            run() {},
        },
        {
            content: "Compare the snapshot with the live data",
            trigger: 'button[name="action_compare_live"]',
        },
        {
            content: "The comparison lists the counted tables",
            trigger: '.o_field_widget[name="line_ids"] tr.o_data_row td[name="model_label"]:contains("Contact")',
            run() {},
        },
        {
            content: "Close it",
            trigger: ".modal-footer button:contains(Close)",
        },
    ]
);

tour.register("deployment_rollback_wizard", {test: true, url: "/web"}, [
    tour.stepUtils.showAppsMenuItem(),
    {
        content: "Open the Deployments app",
        trigger: '.o_app[data-menu-xmlid="deployment_rollback.deployment_rollback_menu_root"]',
    },
    openAppMenu("deployment_rollback.deployment_rollback_menu", "Open the Rollbacks menu"),
    {
        content: "Open the rollback checklist",
        trigger: '[data-menu-xmlid="deployment_rollback.deployment_rollback_wizard_menu"]',
    },
    // Inside a dialog, the tour looks for triggers within the dialog: no ".modal" in the selectors.
    {
        content: "Select the immediate trigger 'Migration errors affecting data'",
        trigger: 'tr.o_data_row:has(td[name="name"]:contains("Migration errors affecting data")) td[name="holds"]',
    },
    {
        content: "Tick it",
        trigger: 'tr.o_selected_row td[name="holds"] input[type="checkbox"]',
    },
    {
        content: "An immediate trigger decides the rollback",
        trigger: '.alert-danger:contains("An immediate trigger holds")',
        run() {},
    },
    {
        content: "Say what went wrong",
        trigger: '.o_field_widget[name="reason"] textarea',
        run: "text Invoices lost their lines after the migration",
    },
    {
        content: "Go on to the snapshot",
        trigger: 'button[name="action_next"]',
    },
    {
        content: "The helper's preview of what would be lost is shown",
        trigger: '.o_field_widget[name="preview_line_ids"] td:contains("Contact")',
        run() {},
    },
    {
        content: "Go on to the confirmation",
        trigger: 'button[name="action_next"]',
    },
    {
        content: "Type the database's name",
        trigger: '.o_field_widget[name="confirm_database"] input',
        run() {
            const name = document.querySelector('.modal .o_field_widget[name="database_name"]').textContent.trim();
            this.$anchor.val(name).trigger("input").trigger("change");
        },
    },
    {
        content: "The rollback can now be started (the test stops here)",
        trigger: 'button[name="action_start"]',
        run() {},
    },
]);

/* A narrow browser folds the app's last menus into the navbar's "+" dropdown, which lists their items
   directly: open the menu itself when it is shown, else that dropdown; the next step clicks the item. */
function openAppMenu(sectionXmlid, content) {
    return {
        content,
        trigger: '.o_menu_sections [data-menu-xmlid="deployment_rollback.deployment_snapshot_menu"]',
        run() {
            const section = $(`.o_menu_sections [data-menu-xmlid="${sectionXmlid}"]:visible`);
            (section.length ? section : $(".o_menu_sections_more > .dropdown-toggle")).click();
        },
    };
}

tour.register("deployment_rollback_postmortem", {test: true, url: "/web"}, [
    tour.stepUtils.showAppsMenuItem(),
    {
        content: "Open the Deployments app",
        trigger: '.o_app[data-menu-xmlid="deployment_rollback.deployment_rollback_menu_root"]',
    },
    openAppMenu("deployment_rollback.deployment_postmortem_menu", "Open the Post-mortems menu"),
    {
        content: "Open the list of post-mortems",
        trigger: '[data-menu-xmlid="deployment_rollback.deployment_postmortem_list_menu"]',
    },
    {
        content: "Write a new post-mortem",
        trigger: ".o_list_button_add",
    },
    {
        content: "Give it a title",
        trigger: '.o_form_view .o_field_widget[name="name"] input',
        run: "text Rollback of the 16.0.3 deployment",
    },
    {
        content: "When the incident started",
        trigger: '.o_field_widget[name="incident_start"] input',
        run: "text 11/20/2026 09:00:00",
    },
    {
        content: "When it ended",
        trigger: '.o_field_widget[name="incident_end"] input',
        run: "text 11/20/2026 09:45:00",
    },
    {
        content: "The duration follows from the two times",
        trigger: '.o_field_widget[name="duration_minutes"]:contains("45")',
        run() {},
    },
    {
        content: "Open the Root Cause tab",
        trigger: '.o_notebook .nav-link:contains("Root Cause")',
    },
    {
        content: "Write the root cause",
        trigger: '.o_field_widget[name="root_cause"] textarea',
        run: "text The migration of 16.0.3 dropped the invoice lines' tax column.",
    },
    {
        content: "Open the Action Items tab",
        trigger: '.o_notebook .nav-link:contains("Action Items")',
    },
    {
        content: "Add an action item",
        trigger: '.o_field_widget[name="action_ids"] .o_field_x2many_list_row_add a',
    },
    {
        content: "Say what is to be done",
        trigger: '.o_field_widget[name="action_ids"] tr.o_selected_row td[name="name"] input',
        run: "text Test migrations on a copy of production",
    },
    {
        content: "Choose its owner",
        trigger: '.o_field_widget[name="action_ids"] tr.o_selected_row td[name="owner_id"] input',
        run: "text Administrator",
    },
    {
        content: "Pick the Administrator",
        trigger: '.ui-menu-item a:contains("Administrator"):not(:contains("Create"))',
    },
    {
        content: "Set when it is due",
        trigger: '.o_field_widget[name="action_ids"] tr.o_selected_row td[name="due_date"] input',
        run: "text 12/15/2026",
    },
    {
        content: "Save the post-mortem",
        trigger: ".o_form_button_save",
    },
    {
        content: "It is saved under its title",
        trigger: '.breadcrumb-item.active:contains("Rollback of the 16.0.3 deployment")',
        run() {},
    },
    {
        content: "Submit it for review",
        trigger: 'button[name="action_submit_review"]',
    },
    {
        content: "The post-mortem is in review",
        trigger: '.o_form_view .o_statusbar_status button[aria-checked="true"]:contains("In Review")',
        run() {},
    },
    // The chatter reloads after the button: the tour ends once it has, so no request of the page is left
    // running on the test's cursor when the test reads the records.
    {
        content: "The chatter tracks the review",
        trigger: '.o_TrackingValue_newValue:contains("In Review")',
        run() {},
    },
    {
        content: "The action item is a planned activity of its owner",
        trigger: '.o_Activity:contains("Test migrations on a copy of production"):contains("Administrator")',
        run() {},
    },
]);

// Quarter labels as the drills show them ("2026-Q4"), from the browser's clock like the test's.
const today = new Date();
const currentQuarter = `${today.getFullYear()}-Q${Math.floor(today.getMonth() / 3) + 1}`;
const lastYearsFirstQuarter = `${today.getFullYear() - 1}-Q1`;
const quarterRow = (label) => `.o_field_widget[name="line_ids"] tr.o_data_row:has(td[name="quarter"]:contains("${label}"))`;

tour.register("deployment_rollback_drills", {test: true, url: "/web"}, [
    tour.stepUtils.showAppsMenuItem(),
    {
        content: "Open the Deployments app",
        trigger: '.o_app[data-menu-xmlid="deployment_rollback.deployment_rollback_menu_root"]',
    },
    openAppMenu("deployment_rollback.deployment_drill_menu", "Open the Drills menu"),
    {
        content: "Open the drills by quarter",
        trigger: '[data-menu-xmlid="deployment_rollback.deployment_drill_overview_menu"]',
    },
    {
        content: "The screen is titled by its name, not as a new record",
        trigger: '.o_control_panel .breadcrumb:contains("Drills by Quarter")',
        run() {
            const title = document.querySelector(".o_control_panel .breadcrumb").textContent;
            if (title.includes("New")) {
                throw new Error(`Drills by Quarter opens titled "${title.trim()}"`);
            }
        },
    },
    {
        content: "This quarter's drill passed",
        trigger: `${quarterRow(currentQuarter)} td[name="state"]:contains("Done")`,
        run() {},
    },
    {
        content: "It lists the drill that passed",
        trigger: `${quarterRow(currentQuarter)} td[name="drill_ids"]:contains("${currentQuarter} drill of")`,
        run() {},
    },
    {
        content: "Last year's first quarter had no drill",
        trigger: `${quarterRow(lastYearsFirstQuarter)} td[name="state"]:contains("Missing")`,
        run() {},
    },
    {
        content: "Drills can be started from here (the tour does not start one)",
        trigger: 'button[name="action_run_now"]',
        run() {},
    },
]);
