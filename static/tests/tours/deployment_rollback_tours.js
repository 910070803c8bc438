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
            content: "The snapshot's record opens, capturing while the helper works",
            trigger: '.o_form_view .o_statusbar_status button[aria-checked="true"]:contains("Capturing")',
            run() {},
        },
        {
            content: "It was requested by the person who clicked",
            trigger: '.o_form_view .o_field_widget[name="requested_by_id"]:contains("Administrator")',
            run() {},
        },
    ]
);

tour.register("deployment_rollback_wizard", {test: true, url: "/web"}, [
    tour.stepUtils.showAppsMenuItem(),
    {
        content: "Open the Deployments app",
        trigger: '.o_app[data-menu-xmlid="deployment_rollback.deployment_rollback_menu_root"]',
    },
    {
        content: "Open the Rollbacks menu",
        trigger: '[data-menu-xmlid="deployment_rollback.deployment_rollback_menu"]',
    },
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
        trigger: '.o_field_widget[name="preview_line_ids"] td:contains("res_partner")',
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
